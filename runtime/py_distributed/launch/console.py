"""What a person sees of a launch: one banner line, and every worker line labelled with its rank.

torchrun opens with four lines of its OMP_NUM_THREADS warning, and the full command line it would
run is 400 characters of absolute paths. The launcher prints one banner instead, and the command
line only when asked (VERBOSE_ENV=1). Worker output goes through torch elastic's own tee, so that
each line carries torchrun's log-line prefix, here the rank, and `--local-ranks-filter` (or
PET_LOCAL_RANKS_FILTER) shows only the ranks chosen.
"""

import contextlib
import logging
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from py_distributed.settings.config import TorchrunConfig

# Set to 1 to see the torchrun command line the launcher runs and torch elastic's own log.
VERBOSE_ENV = "PY_DISTRIBUTED_VERBOSE"
# torch elastic's variable for the prefix of each worker line (agent/server/local_elastic_agent.py).
PREFIX_TEMPLATE_ENV = "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"


def verbose(environ: Mapping[str, str]) -> bool:
    return environ.get(VERBOSE_ENV, "") not in ("", "0")


def cpus() -> int:
    """The CPUs this launcher may use."""
    return len(os.sched_getaffinity(0))


def line_prefix(config: TorchrunConfig) -> str:
    """torch elastic's template for the prefix of each worker line: the rank, and on several nodes
    the node, by the address the other nodes reach it at."""
    if config.multi_node and config.local_addr:
        return f"[{config.local_addr} rank${{rank}}]: "
    return "[rank${rank}]: "


@dataclass(frozen=True)
class Banner:
    """The facts of one launch that a person wants first."""

    name: str
    local_workers: int
    config: TorchrunConfig
    device: str  # "CPU (gloo)", "4 GPUs (nccl)"
    threads: str  # OMP_NUM_THREADS of each worker
    threads_chosen: bool  # by the launcher, from cpus(), rather than by the user

    def line(self) -> str:
        config = self.config
        nodes = str(config.min_nodes)
        if config.max_nodes != config.min_nodes:
            nodes += f"..{config.max_nodes}"
        if config.standalone:
            rendezvous = "rendezvous on loopback"
        else:
            rendezvous = f"rendezvous {config.rdzv_endpoint} (id {config.rdzv_id})"
        threads = f"OMP_NUM_THREADS={self.threads}"
        if self.threads_chosen:
            threads += f" ({_count(cpus(), 'CPU')} / {_count(self.local_workers, 'worker')})"
        shape = f"{_count(self.local_workers, 'worker')} x {_count(nodes, 'node')}"
        return f"{self.name}: {shape}, {self.device}, {rendezvous}, {threads}"


def _count(number: int | str, noun: str) -> str:
    return f"{number} {noun}" + ("" if str(number) == "1" else "s")


def command_line(name: str, argv: Sequence[str]) -> str:
    """The torchrun command line, for the record: the workers also need the launcher's
    environment, so it is not meant to be run again by hand."""
    return f"{name}: torchrun {shlex.join(argv)}"


@contextlib.contextmanager
def torch_elastic_log(environ: Mapping[str, str]) -> Iterator[None]:
    """torch elastic's own log only when asked (VERBOSE_ENV): it names failed workers in its own
    order, often blaming an echo, where the launcher reports the root cause once, and lists every
    signal it sends. Its loggers set their own levels (elastic/utils/logging.py), so only
    `logging.disable` reaches them; the previous setting is back when the block ends."""
    global _quieted_from
    if verbose(environ):
        yield
        return
    previous = _quieted_from = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)
        _quieted_from = None


# The program's logging.disable level while `torch_elastic_log` has raised it; None outside.
_quieted_from: int | None = None


def forget_in_worker() -> None:
    """In a worker forked from the launcher: the program's own logging, which the launcher quiets
    for torch elastic's sake during the launch."""
    if _quieted_from is not None:
        logging.disable(_quieted_from)
