"""Where each torchrun setting of a launch comes from: the first place that has it.

PET_<NAME> (torchrun's own variable, empty counts as unset) wins over the explicit values (a
binary's BUILD attributes or `maybe_run_training`'s arguments), which win over the cluster
description (`cluster`: the number of nodes, the chief's endpoint and a run id stable for the job),
which wins over torchrun's default. The values are raw here, each with its source for messages;
`checks` holds them to their grammar and `config` decides.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from py_distributed import grammar
from py_distributed.cluster import DEFAULT_PORT, Cluster
from py_distributed.errors import UsageError

# The settings the launcher passes explicitly; each may be set at run time by PET_<NAME>, the
# variable torchrun itself reads (torch/distributed/argparse_util.py), and all but the last two
# explicitly.
KNOBS = (
    "nproc_per_node",
    "nnodes",
    "max_restarts",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_conf",
    "start_method",
    "rdzv_id",
    "local_addr",
)
_DEFAULTS = {
    "nproc_per_node": "1",
    "nnodes": "1",
    "max_restarts": "0",
    "rdzv_backend": "c10d",
    "rdzv_endpoint": "",
    "rdzv_conf": "",
    "start_method": "spawn",  # torchrun's: each worker a fresh interpreter
    "rdzv_id": "none",  # torchrun's: every node of a job must name the same rendezvous
    "local_addr": "",  # torch's: this host's FQDN
}
# The backends whose endpoint is the chief node (etcd's is the etcd server, no node of the job).
_HOSTED = ("c10d", "static")


@dataclass(frozen=True)
class Given:
    """Every setting's raw value and where it came from, for messages that name both."""

    values: Mapping[str, str]
    sources: Mapping[str, str]

    def __getitem__(self, knob: str) -> str:
        return self.values[knob]

    def bad(self, knob: str, fix: str) -> UsageError:
        return UsageError(f"{knob}={self.values[knob]!r} (from {self.sources[knob]}): {fix}")


def given(
    explicit: Mapping[str, str],
    explicit_source: str,
    environ: Mapping[str, str],
    cluster: Cluster,
) -> Given:
    """Each setting from the first that has it: PET_<NAME> (empty counts as unset), `explicit`
    (named `explicit_source` in messages), the cluster description, torchrun's default."""
    derived = _from_cluster(cluster)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for knob in KNOBS:
        env_name = f"PET_{knob.upper()}"
        if environ.get(env_name, "") != "":
            values[knob], sources[knob] = environ[env_name], env_name
        elif knob in explicit:
            values[knob], sources[knob] = explicit[knob], explicit_source
        elif knob in derived and (knob != "rdzv_endpoint" or values["rdzv_backend"] in _HOSTED):
            values[knob], sources[knob] = derived[knob], cluster.source
        else:
            values[knob], sources[knob] = _DEFAULTS[knob], "default"
    return Given(values, sources)


def _from_cluster(cluster: Cluster) -> dict[str, str]:
    """The settings a multi-node description implies. The chief's endpoint is `localhost`: torch
    decides whether this node hosts the store by its host name, and misses addresses on other
    interfaces than the host name's, so a chief given its own address waits for itself forever
    (pytorch#79388)."""
    if cluster.num_nodes == 1:
        return {}
    host = "localhost" if cluster.is_chief else cluster.chief.address
    return {
        "nnodes": str(cluster.num_nodes),
        "rdzv_endpoint": grammar.join_endpoint(host, cluster.port or DEFAULT_PORT),
        "rdzv_id": cluster.job_id or "none",
    }
