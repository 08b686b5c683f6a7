"""Kubernetes: the variables Kubeflow's operators set on each pod of a PyTorchJob or Trainer JobSet.

PyTorchJob sets MASTER_ADDR/PORT, PET_NNODES, PET_NODE_RANK and RANK (the node's) on every pod,
MASTER_ADDR=localhost on the master's; older operators set WORLD_SIZE to the number of pods and
no PET_NNODES. Trainer's JobSet sets PET_MASTER_ADDR/PORT, PET_NNODES and PET_NODE_RANK
(kubeflow/trainer pkg/constants); the JobSet of a `.k8s` target (`submit/kubernetes.py`) the first
three, and its Job controller JOB_COMPLETION_INDEX. Pods are told only the chief's address;
`node_address` finds theirs.
"""

from collections.abc import Mapping

from py_distributed import grammar
from py_distributed.cluster._description import Cluster, Machine, digest, index, parsed
from py_distributed.errors import UsageError


def from_env(env: Mapping[str, str]) -> Cluster | None:
    """The pod's cluster; None when no chief address or no node count is given: then MASTER_ADDR is
    only torch's own variable, not a cluster description."""
    addr_var = "PET_MASTER_ADDR" if env.get("PET_MASTER_ADDR") else "MASTER_ADDR"
    count_var = next((v for v in ("PET_NNODES", "WORLD_SIZE") if env.get(v)), None)
    if not env.get(addr_var) or count_var is None:
        return None
    count = _node_count(env[count_var], count_var)
    rank_vars = ("PET_NODE_RANK", "RANK", "JOB_COMPLETION_INDEX")
    rank_var = next((v for v in rank_vars if env.get(v)), None)
    if rank_var is None and count > 1:
        raise UsageError(
            f"{count_var}={env[count_var]!r} but no PET_NODE_RANK, RANK or JOB_COMPLETION_INDEX"
            " says which node this is; set PET_NODE_RANK"
        )
    node_rank = index(env[rank_var], count, rank_var) if rank_var else 0
    port_var = "PET_MASTER_PORT" if env.get("PET_MASTER_PORT") else "MASTER_PORT"
    port = parsed(grammar.port, env[port_var], port_var) if env.get(port_var) else None
    chief = Machine(parsed(grammar.endpoint, env[addr_var], addr_var)[0])
    # A worker pod knows only the chief's address (the chief's own pod: localhost).
    here = chief if node_rank == 0 else Machine("")
    # The chief's address differs between pods: only what they all share names the run.
    job_id = digest("k8s", [str(port), str(count)])
    return Cluster("Kubernetes", chief, count - 1, node_rank, here, port, job_id)


def _node_count(value: str, variable: str) -> int:
    """PET_NNODES is torchrun's N or MIN:MAX (an elastic PyTorchJob), of which the largest job
    counts; WORLD_SIZE is a plain N."""
    if variable == "PET_NNODES":
        return parsed(grammar.nnodes, value, variable)[1]
    if not (grammar.is_number(value) and int(value) > 0):
        raise UsageError(f"{variable}={value!r}: use a number of nodes N > 0")
    return int(value)
