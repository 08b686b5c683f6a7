"""torchrun's knobs for one launch: BUILD values, overridden by torchrun's PET_* variables, checked.

Parsing, deciding and doing are separate, as in torch/distributed/run.py: this module decides, and
every bad value becomes one UsageError before any worker starts.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from py_distributed.errors import UsageError

# The knobs the launcher passes explicitly; each may be set at run time by PET_<KNOB>, the variable
# torchrun itself reads (torch/distributed/argparse_util.py), and all but rdzv_id in BUILD.
KNOBS = (
    "nproc_per_node",
    "nnodes",
    "max_restarts",
    "rdzv_backend",
    "rdzv_endpoint",
    "rdzv_id",
    "rdzv_conf",
)
_DEFAULTS = {
    "nproc_per_node": "1",
    "nnodes": "1",
    "max_restarts": "0",
    "rdzv_backend": "c10d",
    "rdzv_endpoint": "",
    "rdzv_id": "none",  # torchrun's: every node of a job must name the same rendezvous
    "rdzv_conf": "",
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
# The same grammars as rules/private/py_distributed_binary.bzl checks at loading time.
_ENDPOINT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(?P<port>[0-9]{1,5}))?")
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

    @property
    def standalone(self) -> bool:
        """A single-node job on the loopback rendezvous."""
        return self.rdzv_backend == STANDALONE_BACKEND

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
        if self.standalone:
            # Workers get MASTER_ADDR from this, not from the host name's address.
            flags.append(f"--local-addr={LOOPBACK}")
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


def resolve(
    build_values: Mapping[str, str],
    torchrun_args: Sequence[str],
    environ: Mapping[str, str],
) -> TorchrunConfig:
    """The launch's torchrun values: PET_<KNOB> if set, else BUILD's, else torchrun's default."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for knob in KNOBS:
        env_name = f"PET_{knob.upper()}"
        if environ.get(env_name, "") != "":
            values[knob], sources[knob] = environ[env_name], env_name
        elif knob in build_values:
            values[knob], sources[knob] = build_values[knob], "BUILD"
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
    if not _NUMBER.fullmatch(given["max_restarts"]):
        raise given.bad("max_restarts", "use an int >= 0")
    if given["rdzv_backend"] not in _RDZV_BACKENDS:
        raise given.bad("rdzv_backend", f"use one of {', '.join(_RDZV_BACKENDS)}")
    endpoint = given["rdzv_endpoint"]
    match = _ENDPOINT.fullmatch(endpoint)
    if endpoint and not (match and int(match["port"] or 0) <= 65535):
        raise given.bad("rdzv_endpoint", "use HOST or HOST:PORT with PORT in 0..65535")
    if not _RUN_ID.fullmatch(given["rdzv_id"]):
        # torch elastic names files after it.
        raise given.bad("rdzv_id", "use letters, digits, '.', '_' and '-' only")
    conf = given["rdzv_conf"]
    if conf and not all(_RDZV_CONF_ITEM.fullmatch(item) for item in conf.split(",")):
        raise given.bad("rdzv_conf", "use KEY=VALUE pairs separated by commas")
    _check_torchrun_args(torchrun_args)

    backend, rdzv_id = given["rdzv_backend"], given["rdzv_id"]
    if not endpoint:
        if max_nodes > 1:
            raise given.bad(
                "rdzv_endpoint", f"nnodes={given['nnodes']} needs the chief's HOST:PORT"
            )
        if backend != "c10d":
            raise given.bad("rdzv_endpoint", f"rdzv_backend={backend} needs HOST:PORT")
        # As torchrun --standalone: a store on a free port of this host, and a fresh run id.
        backend, endpoint = STANDALONE_BACKEND, f"{LOOPBACK}:0"
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
    )


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
        if flag == "rdzv_id":
            fix = "set it with PET_RDZV_ID"
        elif flag in KNOBS:
            fix = f"set it with the {flag} attribute or PET_{flag.upper()}"
        else:
            fix = "the launcher decides how workers start; remove it"
        raise UsageError(f"torchrun_args has {arg!r}: {fix}")
