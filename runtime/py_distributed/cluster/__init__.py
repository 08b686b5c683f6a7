"""Cluster discovery: which nodes make up this job and which one this is, from the environment.

A launcher runs once per node. Schedulers describe the job to it in their own variables; this
package reads them, one module per source, into one `Cluster`, and the first description found
wins. The order runs from the most deliberate to the most generic: explicit arguments, TF_CONFIG
(the seed's format, set for this job), SLURM (variables only SLURM sets), Kubernetes (Kubeflow
PyTorchJob, Trainer/JobSet) last, as its MASTER_ADDR and WORLD_SIZE are torch's own names that a
SLURM script or a person may set too; else a single machine. It only reads: which address and
interface this node uses is `node_address`'s business, what torchrun is told `config`'s.
"""

import dataclasses
import os
from collections.abc import Mapping, Sequence

from py_distributed.cluster import kubernetes, slurm, tf_config
from py_distributed.cluster._description import (
    SINGLE_MACHINE,
    Cluster,
    Machine,
    cluster,
    digest,
)
from py_distributed.cluster.slurm import expand_hostlist
from py_distributed.errors import UsageError

__all__ = [
    "DEFAULT_PORT",
    "SINGLE_MACHINE",
    "Cluster",
    "Machine",
    "expand_hostlist",
    "machine_from_env",
    "single_machine",
]

# torchrun's default port of a c10d rendezvous endpoint (torch/distributed/run.py), used when a
# description names the chief without a port.
DEFAULT_PORT = 29400
# The descriptions in the order they are tried.
_SOURCES = (tf_config.from_env, slurm.from_env, kubernetes.from_env)


def single_machine(num_accelerators: int | None = None) -> Cluster:
    """The description of a job on this machine alone."""
    here = Machine("", num_accelerators)
    return Cluster(SINGLE_MACHINE, here, 0, 0, here)


def machine_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    chief: str | None = None,
    workers: Sequence[str] = (),
    node_rank: int | None = None,
    num_accelerators: int | None = None,
) -> Cluster:
    """This job's cluster: from explicit arguments, else from the first description in `environ`.

    Args:
      environ: the variables to read; default `os.environ`.
      chief: "HOST[:PORT]" of node 0; if given, the arguments describe the cluster and no
        variable is read.
      workers: "HOST[:PORT]" of the other nodes, in node order.
      node_rank: this node's index in [chief, *workers]; needed when there are workers.
      num_accelerators: accelerators per node, overriding what a description says.

    Raises:
      UsageError: a description is malformed; the message names the variable and the fix.
    """
    env = os.environ if environ is None else environ
    if chief is not None:
        found = _from_arguments(chief, workers, node_rank)
    else:
        # Lazily: a later source is not read, nor its errors raised, once one describes the job.
        described = (description for read in _SOURCES if (description := read(env)))
        found = next(described, None) or single_machine()
    if num_accelerators is None:
        return found
    return dataclasses.replace(
        found,
        chief=Machine(found.chief.address, num_accelerators),
        this_machine=Machine(found.this_machine.address, num_accelerators),
    )


def _from_arguments(chief: str, workers: Sequence[str], node_rank: int | None) -> Cluster:
    nodes = [chief, *workers]
    if node_rank is None and workers:
        raise UsageError("machine_from_env(chief=..., workers=...) needs node_rank= of this node")
    rank = node_rank or 0
    if not 0 <= rank < len(nodes):
        raise UsageError(f"node_rank={rank} is not in 0..{len(nodes) - 1}: one per chief or worker")
    return cluster("arguments", nodes, rank, job_id=digest("job", nodes))
