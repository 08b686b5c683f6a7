"""torchrun's settings for one launch: PET_* variables over explicit values over the cluster.

Parsing, deciding and doing are separate, as in torch/distributed/run.py: this module decides, in
three steps that each stand alone: `given` takes every setting from the first place that has it,
`check` holds each value to its grammar (the build-time check of BUILD values runs exactly this),
and `resolve` makes the single-node decision. Every bad value becomes one UsageError naming the
value, where it came from and the fix, before any worker starts. Explicit values are a binary's
BUILD attributes or `maybe_run_training`'s arguments; the cluster description (`cluster`) fills in
what neither says: the number of nodes, the chief's endpoint and a run id stable for the job.
"""

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from py_distributed import grammar
from py_distributed.cluster import DEFAULT_PORT, Cluster, single_machine
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
_RUN_TIME_ONLY = ("rdzv_id", "local_addr")
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
# torchrun flags that the launcher owns: the settings, and how the worker entry is given.
_OWNED_FLAGS = frozenset(KNOBS) | {
    "standalone",
    "no_python",
    "module",
    "run_path",
    "m",
    "h",
    "help",
}

_NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")
_NPROC_MAX = 1024
_RDZV_BACKENDS = ("c10d", "etcd", "etcd-v2", "static")
# torchrun's --start-method: how torch elastic starts each worker (launch.warm_start).
START_METHODS = ("spawn", "fork", "forkserver")
# The backends whose endpoint is the chief node (etcd's is the etcd server, no node of the job).
_HOSTED = ("c10d", "static")
_RUN_ID = re.compile(r"[A-Za-z0-9._-]+")  # torch elastic names files after it
_T = TypeVar("_T")
_RDZV_CONF_ITEM = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>[^,]+)")
# rdzv_conf keys that torch's rendezvous handlers read as a count of seconds or tries
# (dynamic_rendezvous.create_handler, c10d_rendezvous_backend.create_backend).
RDZV_CONF_COUNTS = (
    "read_timeout",
    "join_timeout",
    "last_call_timeout",
    "close_timeout",
    "heartbeat_timeout",
    "keep_alive_interval",
    "keep_alive_max_attempt",
)
# torch's c10d backend: how long a node's store client tries to reach the chief's store, and waits
# on any store read (c10d_rendezvous_backend._create_tcp_store).
_READ_TIMEOUT_DEFAULT = 60
# A store client gives up on an unreachable store after at most about 2.5 read timeouts (measured
# with torch 2.13; see _read_timeout_within_join_timeout).
_JOIN_PER_READ_TIMEOUT = 3


@dataclass(frozen=True)
class TorchrunConfig:
    """Checked torchrun values for this node; `elastic` spells them as torchrun flags."""

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
    start_method: str = "spawn"  # one of START_METHODS
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


@dataclass(frozen=True)
class Given:
    """Every setting's raw value and where it came from, for messages that name both."""

    values: Mapping[str, str]
    sources: Mapping[str, str]

    def __getitem__(self, knob: str) -> str:
        return self.values[knob]

    def bad(self, knob: str, fix: str) -> UsageError:
        return UsageError(f"{knob}={self.values[knob]!r} (from {self.sources[knob]}): {fix}")


@dataclass(frozen=True)
class Checked:
    """The settings parsed by their grammars."""

    nproc_per_node: str
    nodes: tuple[int, int]
    max_restarts: int
    rdzv_backend: str
    endpoint: tuple[str, int | None] | None  # None: none given
    rdzv_id: str
    rdzv_conf: str
    local_addr: str
    start_method: str


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


def check(values: Given, torchrun_args: Sequence[str]) -> Checked:
    """Holds every setting to its grammar, and torchrun_args to what the launcher leaves them."""
    nproc = values["nproc_per_node"]
    if nproc not in _NPROC_WORDS and not (
        grammar.is_number(nproc) and 0 < int(nproc) <= _NPROC_MAX
    ):
        words = ", ".join(_NPROC_WORDS)
        raise values.bad("nproc_per_node", f"use an int in 1..{_NPROC_MAX} or one of {words}")
    if not grammar.is_number(values["max_restarts"]):
        raise values.bad("max_restarts", "use an int >= 0")
    if values["rdzv_backend"] not in _RDZV_BACKENDS:
        raise values.bad("rdzv_backend", f"use one of {', '.join(_RDZV_BACKENDS)}")
    if values["start_method"] not in START_METHODS:
        raise values.bad("start_method", f"use one of {', '.join(START_METHODS)}")
    if not _RUN_ID.fullmatch(values["rdzv_id"]):
        raise values.bad("rdzv_id", "use letters, digits, '.', '_' and '-' only")
    _check_rdzv_conf(values)
    _check_torchrun_args(torchrun_args)
    return Checked(
        nproc_per_node=nproc,
        nodes=_parsed(values, "nnodes", grammar.nnodes),
        max_restarts=int(values["max_restarts"]),
        rdzv_backend=values["rdzv_backend"],
        endpoint=_parsed(values, "rdzv_endpoint", grammar.endpoint)
        if values["rdzv_endpoint"]
        else None,
        rdzv_id=values["rdzv_id"],
        rdzv_conf=values["rdzv_conf"],
        local_addr=_local_addr(values),
        start_method=values["start_method"],
    )


def check_build_values(explicit: Mapping[str, str], torchrun_args: Sequence[str]) -> None:
    """What the build checks of a binary's BUILD settings: `check`, alone (a cluster description
    or PET_* variable may still complete them at run time)."""
    check(given(explicit, "BUILD", {}, single_machine()), torchrun_args)


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
        else _read_timeout_within_join_timeout(checked.rdzv_conf),
        standalone=standalone,
        torchrun_args=tuple(torchrun_args),
        local_addr=checked.local_addr,
        start_method=checked.start_method,
        # The static backend ranks nodes by --node-rank; PET_NODE_RANK, if set, torchrun reads.
        node_rank=cluster.node_rank if static_ranks and not environ.get("PET_NODE_RANK") else None,
    )


def _parsed(values: Given, knob: str, parse: Callable[[str], _T]) -> _T:
    try:
        return parse(values[knob])
    except ValueError as error:
        raise values.bad(knob, str(error)) from None


def _local_addr(values: Given) -> str:
    if not values["local_addr"]:
        return ""
    host, port = _parsed(values, "local_addr", grammar.endpoint)
    if port is not None:
        raise values.bad("local_addr", "use this node's host name or IP address, without a port")
    return host


def _check_rdzv_conf(values: Given) -> None:
    conf = values["rdzv_conf"]
    items = [_RDZV_CONF_ITEM.fullmatch(item) for item in conf.split(",")] if conf else []
    for item in items:
        if item is None:
            raise values.bad("rdzv_conf", "use KEY=VALUE pairs separated by commas")
        key, value = item["key"], item["value"]
        if key in RDZV_CONF_COUNTS and not (grammar.is_number(value) and int(value) > 0):
            raise values.bad(
                "rdzv_conf", f"{key}={value}: use a positive number of seconds or tries"
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
    items = dict(item.split("=", 1) for item in conf.split(",")) if conf else {}
    join = items.get("join_timeout")
    if join is None or "read_timeout" in items:
        return conf
    read_timeout = max(1, int(join) // _JOIN_PER_READ_TIMEOUT)
    if read_timeout >= _READ_TIMEOUT_DEFAULT:
        return conf
    return f"{conf},read_timeout={read_timeout}"


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


def _check_torchrun_args(torchrun_args: Sequence[str]) -> None:
    for arg in torchrun_args:
        flag = arg.lstrip("-").split("=", 1)[0].replace("-", "_")
        if not arg.startswith("-") or flag not in _OWNED_FLAGS:
            continue
        if flag in _RUN_TIME_ONLY:
            fix = f"set it with PET_{flag.upper()}"
        elif flag in KNOBS:
            fix = f"set it with the {flag} attribute or PET_{flag.upper()}"
        else:
            fix = "the launcher decides how workers start; remove it"
        raise UsageError(f"torchrun_args has {arg!r}: {fix}")
