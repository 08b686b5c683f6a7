"""How a launch failed, from what torch elastic raised: its failed workers, or its rendezvous.

torch elastic reports each worker it started with a command (`ChildFailedError.failures`), but of
the workers it forked (`launch.warm_start`) only the first failure it finds. The others come from
the finder (`launch.workers`), which also gives every failure its end time for the root cause. A
rendezvous that did not form gets one line that says why, where torch's own message may be empty.
"""

import os
import signal
from collections.abc import Collection

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
from torch.distributed.elastic.rendezvous import (
    RendezvousClosedError,
    RendezvousConnectionError,
    RendezvousError,
    RendezvousTimeoutError,
)
from torch.distributed.launcher.api import LaunchConfig

from py_distributed.launch import signed_state
from py_distributed.launch.root_cause import Failure, in_order
from py_distributed.launch.workers import Workers
from py_distributed.protocol import Record
from py_distributed.settings.config import READ_TIMEOUT_DEFAULT

# torch elastic's default (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py).
_JOIN_TIMEOUT_DEFAULT = 600


def collected(failed: ChildFailedError, workers: Workers) -> list[Failure]:
    """Every failed worker, the root cause first (`root_cause.in_order`)."""
    failures = [_failure(rank, f, workers.ended_ns(f.pid)) for rank, f in failed.failures.items()]
    failures += _forked_failures(workers, {f.pid for f in failures})
    return in_order(failures)


def _forked_failures(workers: Workers, known: Collection[int]) -> list[Failure]:
    """The failures of workers that torch elastic forked, beside those of pids in `known`, torch's
    own report. Call it once torch elastic has stopped them all.

    Only those of the latest attempt, and not those stopped after the first failure (SIGTERM
    from torch elastic, SIGKILL from the shutdown bound), as torch's report of the workers it
    starts with a command leaves those out.
    """
    records = workers.ended()
    forked = {pid: r for pid, r in records.items() if r.forked and r.rank.isdecimal()}
    latest = max((int(r.attempt) for r in forked.values() if r.attempt.isdecimal()), default=0)
    failed = {
        pid: status
        for pid, record in forked.items()
        if record.attempt == str(latest) and (status := workers.status(pid))
    }
    ends = {pid: workers.ended_ns(pid) or 0 for pid in failed}
    first = min(ends.values(), default=0)
    stops = (-signal.SIGTERM, -signal.SIGKILL)
    return [
        _failure(int(forked[pid].rank), _process_failure(forked[pid], pid, status), ends[pid])
        for pid, status in failed.items()
        if pid not in known and (ends[pid] == first or status not in stops)
    ]


def _failure(rank: int, failure: ProcessFailure, ended_ns: int | None) -> Failure:
    traceback, summary = _error_text(failure)
    return Failure(
        rank,
        failure.local_rank,
        failure.pid,
        failure.exitcode,
        traceback,
        summary,
        failure.timestamp,
        ended_ns,
    )


def _process_failure(record: Record, pid: int, status: int) -> ProcessFailure:
    """torch elastic's record of a failed worker, from the worker's own record: torch reads the
    worker's error file, if it wrote one."""
    local_rank = int(record.local_rank) if record.local_rank.isdecimal() else -1
    return ProcessFailure(local_rank, pid, status, record.error_file or "<N/A>")


def _error_text(failure: ProcessFailure) -> tuple[str, str]:
    """(traceback, the line naming the error) from a worker's error file; ("", "") without one.

    torch elastic makes up a message where there is no file ("Signal 9 (SIGKILL) received by PID",
    a link to its docs): the exit status says as much. torch's ErrorHandler writes {"message":
    {"message": "Type: text", "extraInfo": {"py_callstack": ...}}}; other writers a plain string.
    """
    if not os.path.isfile(failure.error_file):  # torch names it "<N/A>" then
        return "", ""
    message: object = failure.message
    if isinstance(message, dict):
        headline = str(message.get("message", "")).strip().partition("\n")[0]
        return str(message.get("extraInfo", {}).get("py_callstack") or headline).rstrip(), headline
    text = str(message).rstrip()
    return text, text.rpartition("\n")[2].strip()


def rendezvous(config: LaunchConfig, error: RendezvousError) -> str:
    """One line for a rendezvous that did not form: torch's own message may be empty."""
    nodes = str(config.min_nodes)
    if config.max_nodes != config.min_nodes:
        nodes += f" to {config.max_nodes}"
    where = f"rendezvous {config.run_id} at {config.rdzv_endpoint}"
    timeout = config.rdzv_configs.get("join_timeout", _JOIN_TIMEOUT_DEFAULT)
    fix = "start every node with the same cluster description, or raise join_timeout"
    if isinstance(error, signed_state.Refused):  # its own message says why and the fix
        return f"{where}: {error}"
    if isinstance(error, RendezvousTimeoutError):
        return f"{where} timed out: {nodes} nodes did not all join within {timeout} s; {fix}"
    if isinstance(error, RendezvousClosedError):  # another node gave up first, and closed it
        return (
            f"{where} was closed by another node before {nodes} nodes joined (it timed out after"
            f" {timeout} s, or stopped); {fix}"
        )
    if isinstance(error, RendezvousConnectionError):  # torch's own message only says "see inner"
        read_timeout = config.rdzv_configs.get("read_timeout", READ_TIMEOUT_DEFAULT)
        cause = str(error.__cause__ or "no detail").splitlines()[0]
        return (
            f"{where}: the chief's store did not answer (read_timeout={read_timeout} s; {cause});"
            " start the chief node, or check the address and that this node reaches it"
        )
    return (
        f"{where} failed ({type(error).__name__}: {error or 'no detail'}); check that the chief"
        " node runs and that this node reaches it"
    )
