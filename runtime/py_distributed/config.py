"""torchrun's knobs for one launch: PET_* variables over explicit values over the cluster, checked.

Parsing, deciding and doing are separate, as in torch/distributed/run.py: this module decides, and
every bad value becomes one UsageError before any worker starts. Explicit values are a binary's
BUILD attributes or `maybe_run_training`'s arguments; the cluster description (`cluster`) fills in
what neither says: the number of nodes, the chief's endpoint and a run id stable for the job.
"""

import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from py_distributed import node_address
from py_distributed.cluster import DEFAULT_PORT, HOST_NAME, Cluster, machine_from_env
from py_distributed.errors import UsageError

# The knobs the launcher passes explicitly; each may be set at run time by PET_<KNOB>, the variable
# torchrun itself reads (torch/distributed/argparse_util.py), and all but the last two explicitly.
KNOBS = (
    "nproc_per_node",
    "nnodes",
    "max_restarts",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_conf",
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
    "rdzv_id": "none",  # torchrun's: every node of a job must name the same rendezvous
    "local_addr": "",  # torch's: this host's FQDN
}
# torchrun flags that the launcher owns: the knobs, and how the worker entry is given.
_OWNED_FLAGS = frozenset(KNOBS) | {
    "standalone",
    "no_python",
    "module",
    "run_path",
    "m",
    "h",
    "help",
}

# A single-node job without an endpoint rendezvouses as `torchrun --standalone` would, but on
# loopback only: py_distributed.loopback registers this backend with torch elastic.
STANDALONE_BACKEND = "c10d-loopback"
LOOPBACK = "127.0.0.1"

_NPROC_WORDS = ("auto", "cpu", "gpu", "xpu")
_RUN_ID = re.compile(r"[A-Za-z0-9._-]+")
_NUMBER = re.compile(r"[0-9]+")  # str.isdigit() would take "²", which int() refuses
_NPROC_MAX = 1024
_RDZV_BACKENDS = ("c10d", "etcd", "etcd-v2", "static")
# The backends whose endpoint is the chief node (etcd's is the etcd server, no node of the job).
_HOSTED = ("c10d", "static")
# The same grammars as rules/private/py_distributed_binary.bzl checks at loading time.
_ENDPOINT = re.compile(
    rf"(?P<host>\[[0-9a-fA-F:.]+\]|{HOST_NAME.pattern})(?::(?P<port>[0-9]{{1,5}}))?"
)
_RDZV_CONF_ITEM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=[^,]+")


@dataclass(frozen=True)
class TorchrunConfig:
    """Validated torchrun values; `argv()` spells them as torchrun flags."""

    nproc_per_node: str
    min_nodes: int
    max_nodes: int
    max_restarts: int
    rdzv_backend: str
    rdzv_endpoint: str
    rdzv_id: str
    rdzv_conf: str
    torchrun_args: tuple[str, ...] = ()
    local_addr: str = ""  # the workers' MASTER_ADDR on the rank-0 node; "": torch's FQDN lookup
    socket_ifname: str = ""  # the interface for gloo and NCCL; "": theirs (the host name's)
    node_rank: int | None = None  # for the static backend, which ranks nodes itself

    @property
    def standalone(self) -> bool:
        """A single-node job on the loopback rendezvous."""
        return self.rdzv_backend == STANDALONE_BACKEND

    @property
    def multi_node(self) -> bool:
        return self.max_nodes > 1

    def argv(self) -> list[str]:
        """torchrun's flags, every knob explicit so that no stray PET_* variable can change it."""
        nnodes = str(self.min_nodes)
        if self.max_nodes != self.min_nodes:
            nnodes += f":{self.max_nodes}"
        flags = [
            f"--nproc-per-node={self.nproc_per_node}",
            f"--nnodes={nnodes}",
            f"--max-restarts={self.max_restarts}",
            f"--rdzv-backend={self.rdzv_backend}",
            f"--rdzv-endpoint={self.rdzv_endpoint}",
            f"--rdzv-id={self.rdzv_id}",
        ]
        if self.rdzv_conf:
            flags.append(f"--rdzv-conf={self.rdzv_conf}")
        if self.local_addr:
            # Workers get MASTER_ADDR from this, not from the host name's address.
            flags.append(f"--local-addr={self.local_addr}")
        if self.node_rank is not None:
            flags.append(f"--node-rank={self.node_rank}")
        return flags + list(self.torchrun_args)


@dataclass(frozen=True)
class _Given:
    """The knobs' raw values and where each came from, for messages that name both."""

    values: Mapping[str, str]
    sources: Mapping[str, str]

    def __getitem__(self, knob: str) -> str:
        return self.values[knob]

    def bad(self, knob: str, fix: str) -> UsageError:
        return UsageError(f"{knob}={self.values[knob]!r} (from {self.sources[knob]}): {fix}")


def for_this_node(
    explicit: Mapping[str, str],
    explicit_source: str,
    torchrun_args: Sequence[str],
    environ: Mapping[str, str],
    cluster: Cluster | None = None,
) -> TorchrunConfig:
    """`resolve` with the environment's cluster description, then this node's address on it."""
    found = machine_from_env(environ) if cluster is None else cluster
    config = resolve(explicit, explicit_source, torchrun_args, environ, found)
    if not config.multi_node or config.standalone:
        return config
    if config.local_addr and any(environ.get(name) for name in node_address.IFNAME_VARIABLES):
        return config  # the user chose both, e.g. an address behind NAT that no interface holds
    host = _ENDPOINT.fullmatch(config.rdzv_endpoint)
    assert host is not None  # resolve() checked it
    node = node_address.find(found, host["host"].strip("[]"), config.local_addr)
    return dataclasses.replace(
        config, local_addr=config.local_addr or node.address, socket_ifname=node.interface
    )


def resolve(
    explicit: Mapping[str, str],
    explicit_source: str,
    torchrun_args: Sequence[str],
    environ: Mapping[str, str],
    cluster: Cluster,
) -> TorchrunConfig:
    """The launch's torchrun values, each from the first that has it: PET_<KNOB>, `explicit` (named
    `explicit_source` in messages), the cluster description, torchrun's default."""
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
    given = _Given(values, sources)

    nproc = given["nproc_per_node"]
    if nproc not in _NPROC_WORDS and not (
        _NUMBER.fullmatch(nproc) and 0 < int(nproc) <= _NPROC_MAX
    ):
        words = ", ".join(_NPROC_WORDS)
        raise given.bad("nproc_per_node", f"use an int in 1..{_NPROC_MAX} or one of {words}")
    min_nodes, max_nodes = _nnodes(given)
    if cluster.num_nodes > 1 and not min_nodes <= cluster.num_nodes <= max_nodes:
        raise given.bad(
            "nnodes",
            f"{cluster.source} describes {cluster.num_nodes} nodes; make them agree, or leave"
            " nnodes unset to take the description's",
        )
    if not _NUMBER.fullmatch(given["max_restarts"]):
        raise given.bad("max_restarts", "use an int >= 0")
    if given["rdzv_backend"] not in _RDZV_BACKENDS:
        raise given.bad("rdzv_backend", f"use one of {', '.join(_RDZV_BACKENDS)}")
    endpoint = given["rdzv_endpoint"]
    match = _ENDPOINT.fullmatch(endpoint)
    if endpoint and not (match and int(match["port"] or 0) <= 65535):
        raise given.bad("rdzv_endpoint", "use HOST or HOST:PORT with PORT in 0..65535")
    local = _ENDPOINT.fullmatch(given["local_addr"])
    if given["local_addr"] and not (local and local["port"] is None):
        raise given.bad("local_addr", "use this node's host name or IP address, without a port")
    if not _RUN_ID.fullmatch(given["rdzv_id"]):
        # torch elastic names files after it.
        raise given.bad("rdzv_id", "use letters, digits, '.', '_' and '-' only")
    conf = given["rdzv_conf"]
    if conf and not all(_RDZV_CONF_ITEM.fullmatch(item) for item in conf.split(",")):
        raise given.bad("rdzv_conf", "use KEY=VALUE pairs separated by commas")
    _check_torchrun_args(torchrun_args)

    backend, rdzv_id = given["rdzv_backend"], given["rdzv_id"]
    local_addr, socket_ifname = given["local_addr"], ""
    if not endpoint:
        if backend != "c10d":
            raise given.bad("rdzv_endpoint", f"rdzv_backend={backend} needs HOST:PORT")
        if max_nodes > 1:
            raise given.bad(
                "rdzv_endpoint",
                f"nnodes={given['nnodes']} needs the chief's HOST:PORT, or a cluster description"
                " (TF_CONFIG, SLURM, Kubernetes' MASTER_ADDR)",
            )
        # As torchrun --standalone: a store on a free port of this host, and a fresh run id.
        backend, endpoint = STANDALONE_BACKEND, f"{LOOPBACK}:0"
        local_addr, socket_ifname = LOOPBACK, "lo"
        if given.sources["rdzv_id"] == "default":
            rdzv_id = uuid.uuid4().hex
    return TorchrunConfig(
        nproc_per_node=nproc,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        max_restarts=int(given["max_restarts"]),
        rdzv_backend=backend,
        rdzv_endpoint=endpoint,
        rdzv_id=rdzv_id,
        rdzv_conf=conf,
        torchrun_args=tuple(torchrun_args),
        local_addr=local_addr,
        socket_ifname=socket_ifname,
        # The static backend ranks nodes by --node-rank; PET_NODE_RANK, if set, torchrun reads.
        node_rank=cluster.node_rank
        if backend == "static" and cluster.num_nodes > 1 and not environ.get("PET_NODE_RANK")
        else None,
    )


def _from_cluster(cluster: Cluster) -> dict[str, str]:
    """The knobs a multi-node description implies. The chief's endpoint is `localhost`: torch
    decides whether this node hosts the store by its host name, and misses addresses on other
    interfaces than the host name's, so a chief given its own address waits for itself forever
    (pytorch#79388)."""
    if cluster.num_nodes == 1:
        return {}
    host = "localhost" if cluster.is_chief else cluster.chief.address
    if ":" in host:
        host = f"[{host}]"
    return {
        "nnodes": str(cluster.num_nodes),
        "rdzv_endpoint": f"{host}:{cluster.port or DEFAULT_PORT}",
        "rdzv_id": cluster.job_id or "none",
    }


def _nnodes(given: _Given) -> tuple[int, int]:
    bounds = given["nnodes"].split(":")
    if len(bounds) <= 2 and all(_NUMBER.fullmatch(b) and int(b) > 0 for b in bounds):
        low, high = int(bounds[0]), int(bounds[-1])
        if low <= high:
            return low, high
    raise given.bad("nnodes", 'use N or "MIN:MAX" with 0 < MIN <= MAX')


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
