"""torchrun's settings for one launch: PET_* variables over explicit values over the cluster.

Parsing, deciding and doing are separate, as in torch/distributed/run.py, and deciding is three
steps that each stand alone: `sources.given` takes every setting from the first place that has it,
`checks.check` holds each value to its grammar (the build-time check of BUILD values runs exactly
this), and `resolve` here makes the single-node decision. Every bad value becomes one UsageError
naming the value, where it came from and the fix, before any worker starts.
"""

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from py_distributed import grammar
from py_distributed.cluster import Cluster
from py_distributed.settings.checks import check
from py_distributed.settings.sources import given

# torch's c10d backend: how long a node's store client tries to reach the chief's store, and waits
# on any store read (c10d_rendezvous_backend._create_tcp_store). The launcher's rendezvous and its
# messages take the same default.
READ_TIMEOUT_DEFAULT = 60
# A store client gives up on an unreachable store after at most about 2.5 read timeouts (measured
# with torch 2.13; see _read_timeout_within_join_timeout).
_JOIN_PER_READ_TIMEOUT = 3
# How long an elastic c10d rendezvous that has its minimum of nodes waits for more before a round
# starts (torch: 30 s); see _elastic_last_call.
_ELASTIC_LAST_CALL_TIMEOUT = 5


@dataclass(frozen=True)
class TorchrunConfig:
    """Checked torchrun values for this node; `launch.torchrun` spells them as torchrun flags."""

    nproc_per_node: str
    min_nodes: int
    max_nodes: int
    max_restarts: int
    rdzv_backend: str
    rdzv_host: str  # "" for a standalone job, whose rendezvous `loopback` places
    rdzv_port: int | None  # None: the backend's default
    rdzv_id: str
    rdzv_conf: str
    standalone: bool  # one node, no endpoint: a private rendezvous on loopback
    torchrun_args: tuple[str, ...] = ()
    start_method: str = "spawn"  # one of checks.START_METHODS
    local_addr: str = ""  # the workers' MASTER_ADDR on the rank-0 node; "": torch's FQDN lookup
    socket_ifname: str = ""  # the interface for gloo and NCCL; "": theirs (the host name's)
    node_rank: int | None = None  # for the static backend, which ranks nodes itself

    @property
    def multi_node(self) -> bool:
        return self.max_nodes > 1

    @property
    def rdzv_endpoint(self) -> str:
        if self.rdzv_port is None:
            return f"[{self.rdzv_host}]" if ":" in self.rdzv_host else self.rdzv_host
        return grammar.join_endpoint(self.rdzv_host, self.rdzv_port)


def resolve(
    explicit: Mapping[str, str],
    explicit_source: str,
    torchrun_args: Sequence[str],
    environ: Mapping[str, str],
    cluster: Cluster,
) -> TorchrunConfig:
    """The launch's checked torchrun values: `given`, `check`, then the single-node decision."""
    values = given(explicit, explicit_source, environ, cluster)
    checked = check(values, torchrun_args)
    min_nodes, max_nodes = checked.nodes
    if cluster.num_nodes > 1 and not min_nodes <= cluster.num_nodes <= max_nodes:
        raise values.bad(
            "nnodes",
            f"{cluster.source} describes {cluster.num_nodes} nodes; make them agree, or leave"
            " nnodes unset to take the description's",
        )
    standalone = checked.endpoint is None
    if standalone and checked.rdzv_backend != "c10d":
        raise values.bad("rdzv_endpoint", f"rdzv_backend={checked.rdzv_backend} needs HOST:PORT")
    if standalone and max_nodes > 1:
        raise values.bad(
            "rdzv_endpoint",
            f"nnodes={values['nnodes']} needs the chief's HOST:PORT, or a cluster description"
            " (TF_CONFIG, SLURM, Kubernetes' MASTER_ADDR)",
        )
    host, port = checked.endpoint or ("", None)
    # As torchrun --standalone: a fresh run id for a job of one node, unless one was given.
    fresh_id = standalone and values.sources["rdzv_id"] == "default"
    static_ranks = checked.rdzv_backend == "static" and cluster.num_nodes > 1
    return TorchrunConfig(
        nproc_per_node=checked.nproc_per_node,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        max_restarts=checked.max_restarts,
        rdzv_backend=checked.rdzv_backend,
        rdzv_host=host,
        rdzv_port=port,
        rdzv_id=uuid.uuid4().hex if fresh_id else checked.rdzv_id,
        rdzv_conf=checked.rdzv_conf
        if standalone or checked.rdzv_backend != "c10d"
        else _elastic_last_call(
            _read_timeout_within_join_timeout(checked.rdzv_conf), min_nodes < max_nodes
        ),
        standalone=standalone,
        torchrun_args=tuple(torchrun_args),
        local_addr=checked.local_addr,
        start_method=checked.start_method,
        # The static backend ranks nodes by --node-rank; PET_NODE_RANK, if set, torchrun reads.
        node_rank=cluster.node_rank if static_ranks and not environ.get("PET_NODE_RANK") else None,
    )


def _read_timeout_within_join_timeout(conf: str) -> str:
    """`conf`, with read_timeout set to a third of join_timeout where that is below torch's default
    read timeout and the user set join_timeout but not read_timeout.

    A node that is not the chief first connects to the chief's store, whatever join_timeout says:
    torch's TCPStore tries for read_timeout, waits a growing random back-off, and tries once more
    for up to read_timeout again, so a worker whose chief never comes fails after 1 to 2.5 times
    read_timeout (60 s: up to about 150 s). A third keeps that within join_timeout. read_timeout
    also bounds each blocking store read after the rendezvous (the workers' address, the rank
    assignment), which nodes that have just joined together answer within a second or two; the
    exit barrier sets a timeout of its own.
    """
    items = _items(conf)
    join = items.get("join_timeout")
    if join is None or "read_timeout" in items:
        return conf
    read_timeout = max(1, int(join) // _JOIN_PER_READ_TIMEOUT)
    if read_timeout >= READ_TIMEOUT_DEFAULT:
        return conf
    return f"{conf},read_timeout={read_timeout}"


def _elastic_last_call(conf: str, elastic: bool) -> str:
    """`conf`, with last_call_timeout set to 5 s for an elastic job (nnodes MIN:MAX) where the user
    did not set it.

    When a node is lost, torch drops it from the rendezvous once its keep-alives have stopped for
    15 s (keep_alive_interval x keep_alive_max_attempt), and the survivors' next round then waits
    last_call_timeout for more nodes: torch's 30 s would have them resume about 45 s after the
    loss, 5 s about 20 s after it (docs/failures.md#node-loss). A node that starts more than 5 s
    after the minimum has joined comes in at the next round: the workers restart, without using up
    max_restarts.
    """
    if not elastic or "last_call_timeout" in _items(conf):
        return conf
    return ",".join(filter(None, [conf, f"last_call_timeout={_ELASTIC_LAST_CALL_TIMEOUT}"]))


def _items(conf: str) -> dict[str, str]:
    """rdzv_conf's KEY=VALUE pairs; `checks` has held it to that grammar."""
    return dict(item.split("=", 1) for item in conf.split(",")) if conf else {}
