"""Every torchrun setting held to its grammar, the one check for all its sources.

The build runs exactly this on a binary's BUILD values (`check_build_values`, from `build_check`),
and every launch on its PET_* variables, explicit values and cluster description, so a value gets
one verdict and one message wherever it is written: `nproc_per_node='0' (from BUILD): ...`.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from py_distributed import grammar
from py_distributed.cluster import single_machine
from py_distributed.errors import UsageError
from py_distributed.settings.sources import KNOBS, Given, given

_RUN_TIME_ONLY = ("rdzv_id", "local_addr")
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


# The run-time override of a binary's hang_timeout (launch.hangs), in seconds; 0 is off.
HANG_TIMEOUT_ENV = "PY_DISTRIBUTED_HANG_TIMEOUT"


def hang_timeout(explicit: str, source: str, environ: Mapping[str, str]) -> float:
    """The hang timeout in seconds, 0 for none: HANG_TIMEOUT_ENV (empty counts as unset), else
    `explicit` (from `source`: "BUILD")."""
    text, source = (
        (environ[HANG_TIMEOUT_ENV], HANG_TIMEOUT_ENV)
        if environ.get(HANG_TIMEOUT_ENV)
        else (explicit or "0", source)
    )
    try:
        return grammar.seconds(text)
    except ValueError as error:
        raise UsageError(f"hang_timeout={text!r} (from {source}): {error}, 0 for none") from None
