"""Which worker failed first, how that is shown, and how long the others get to stop.

torch elastic picks the root cause by a timestamp in whole seconds and gives ties to the lowest
rank (`ProcessFailure.timestamp`, `ChildFailedError.get_first_failure`). When one rank dies, its
peers in a collective fail a few milliseconds later with only an echo ("Connection closed by
peer"), so torchrun often blames a rank that did nothing wrong, and takes its exit code. Here the
launcher's `ExitClock` notes the moment each worker ends (a pidfd each, well under a millisecond
late), `in_order` puts the worker that ended first at the front, and `report` formats the failures,
once.
"""

import contextlib
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from types import TracebackType

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from py_distributed.worker import WORKERS_DIR_ENV, Record, read_record

# torchrun's --shutdown-timeout (PET_SHUTDOWN_TIMEOUT, TORCH_ELASTIC_SHUTDOWN_TIMEOUT) when the
# user set none: how long workers get between SIGTERM and SIGKILL. torch's 30 s is long for a
# developer waiting at a terminal for a failed job to give the prompt back.
SHUTDOWN_TIMEOUT_DEFAULT = 5
SHUTDOWN_TIMEOUT_VARIABLES = frozenset({"PET_SHUTDOWN_TIMEOUT", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"})

# How often the clock looks for new workers. Exits are seen at once (a pidfd each): this bounds
# only how late a worker that ends in its first moments is noticed.
_SCAN_SECONDS = 0.01


class ExitClock:
    """Notes when each worker ends, and SIGKILLs the survivors `shutdown_timeout` after a failure.

    A daemon thread watches the children that the launching thread starts during the block: torch
    elastic's workers (its SubprocessContext Popens them from that thread; the Bazel stub execs,
    keeping the pid; its MultiprocessContext forks them), or, with the forkserver start method,
    the children of multiprocessing's forkserver, which the launching thread starts along with
    multiprocessing's resource tracker, neither of them a worker (py_distributed.warm_start).
    It holds a pidfd for each and records `time.monotonic_ns()` when one becomes readable. It
    never reaps (waitid with WNOWAIT): torch elastic still starts, monitors, stops and reaps every
    worker. The exit status of a worker that is not the launcher's child comes from the worker's
    `Record`, where it tells its end through the runtime, success included, and from
    multiprocessing once torch has stopped them all (`forked_failures`). Without pidfds or /proc
    (not Linux) it notes nothing, and torch's order stands.

    The bound: when a worker fails, torch elastic's SubprocessContext._poll stops the others with
    `self.close()`, and a restart with `LocalElasticAgent._stop_workers` -> `self._shutdown()`
    (torch/distributed/elastic/multiprocessing/api.py, agent/server/local_elastic_agent.py in
    torch 2.13): both take the fixed default of 30 s and ignore `shutdown_timeout`, which only
    the signal path passes on (agent/server/api.py). So the clock SIGKILLs the workers still
    running `shutdown_timeout` seconds after the first failure, and both paths end within it.
    """

    def __init__(self, name: str, shutdown_timeout: float | None) -> None:
        """`name` prefixes its messages; `shutdown_timeout` None enforces no bound."""
        self._name = name
        self._grace_ns = None if shutdown_timeout is None else int(shutdown_timeout * 1e9)
        self._tid = threading.get_native_id()  # the thread that will start the workers
        self._ended: dict[int, int] = {}  # pid -> monotonic ns
        self._watched: dict[int, int] = {}  # pid -> pidfd, for workers still running
        self._known: set[int] = set()  # pids listed as workers, watched or not
        self._grandchildren: set[int] = set()  # watched workers not this process's children
        self._statuses: dict[int, int | None] = {}  # pid -> exit status of an ended worker
        self._records: dict[int, Record] = {}  # pid -> the record of an ended worker
        # pid -> multiprocessing's object for each worker torch elastic forked
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._doomed: set[int] = set()  # pids running when a worker failed, until the deadline
        self._deadline_ns = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="py_distributed exit clock")
        self._thread.daemon = True

    def __enter__(self) -> "ExitClock":
        if hasattr(os, "pidfd_open"):
            # The program's own children (maybe_run_training's caller may have some) are not ours.
            self._known = set(self._listed())
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)  # it looks every _SCAN_SECONDS

    def ended_ns(self, pid: int) -> int | None:
        """When worker `pid` ended (time.monotonic_ns), or None if the clock did not see it."""
        return self._ended.get(pid)

    def forked_failures(self, known: Collection[int]) -> list["Failure"]:
        """The failures of workers that torch elastic forked (py_distributed.warm_start), beside
        those of pids in `known`, torch's own report: torch reports one such worker's failure, the
        first it finds, and none of the others. Call it once torch elastic has stopped them all.

        Only those of the latest attempt, and not those stopped after the first failure (SIGTERM
        from torch elastic, SIGKILL from this clock), as torch's report of the workers it starts
        with a command leaves those out.
        """
        forked = {pid: r for pid, r in self._records.items() if r.forked and r.rank.isdecimal()}
        latest = max((int(r.attempt) for r in forked.values() if r.attempt.isdecimal()), default=0)
        failed = {
            pid: status
            for pid, record in forked.items()
            if record.attempt == str(latest) and (status := self._status(pid))
        }
        first = min((self._ended[pid] for pid in failed), default=0)
        stops = (-signal.SIGTERM, -signal.SIGKILL)
        return [
            _failure(int(forked[pid].rank), _process_failure(forked[pid], pid, status), ended)
            for pid, status in failed.items()
            if pid not in known and ((ended := self._ended[pid]) == first or status not in stops)
        ]

    def _status(self, pid: int) -> int | None:
        """Worker `pid`'s exit status: the clock's, else multiprocessing's, whose process objects
        have it once torch elastic has stopped the workers: the forkserver's children tell the
        clock only an end through the runtime, and torch may reap a child before the clock looks."""
        status = self._statuses.get(pid)
        process = self._processes.get(pid)
        return process.exitcode if status is None and process is not None else status

    def _children(self) -> set[int]:
        return _task_children(os.getpid(), self._tid)

    def _listed(self) -> dict[int, bool]:
        """This launch's workers now, each with whether it is this process's child: the launching
        thread's children but multiprocessing's helpers, and the forkserver's children."""
        children = self._children()
        server = _pid_of(multiprocessing.forkserver, "_forkserver", "_forkserver_pid")
        tracker = _pid_of(multiprocessing.resource_tracker, "_resource_tracker", "_pid")
        listed = dict.fromkeys(children - {server, tracker}, True)
        if server in children:
            listed.update(dict.fromkeys(_task_children(server, server), False))
        return listed

    def _watch(self) -> None:
        with selectors.DefaultSelector() as selector:
            try:
                while not self._stopped.is_set():
                    self._adopt_new_children(selector)
                    timeout = _SCAN_SECONDS
                    if self._doomed:
                        timeout = min(timeout, (self._deadline_ns - time.monotonic_ns()) / 1e9)
                    ready = selector.select(max(timeout, 0))
                    now = time.monotonic_ns()  # one time for all: they ended since the last look
                    for key, _ in ready:
                        self._note_end(selector, key.data, now)
                    if self._doomed and now >= self._deadline_ns:
                        self._kill_survivors()
            finally:
                for fd in self._watched.values():
                    os.close(fd)

    def _adopt_new_children(self, selector: selectors.BaseSelector) -> None:
        listed = self._listed()
        # multiprocessing forgets a process once it is joined: keep each while it is listed. The
        # copy is one C call, which no other thread interrupts.
        started = list(getattr(multiprocessing.process, "_children", ()))
        self._processes.update((p.pid, p) for p in started if p.pid in listed)
        # A helper is known as such only once multiprocessing has noted its pid, after its start.
        for pid in [pid for pid in self._watched if pid not in listed and pid in self._children()]:
            fd = self._watched.pop(pid)
            selector.unregister(fd)
            os.close(fd)
        self._known &= listed.keys()  # a reaped pid may come back as a new worker
        for pid, child in listed.items():
            if pid in self._known:
                continue
            self._known.add(pid)
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # gone already
                continue
            if child:
                try:
                    _exit_status(fd)
                except ChildProcessError:  # reaped, and the pid reused meanwhile: not ours
                    os.close(fd)
                    continue
            else:
                self._grandchildren.add(pid)
            self._watched[pid] = fd
            selector.register(fd, selectors.EVENT_READ, pid)

    def _note_end(self, selector: selectors.BaseSelector, pid: int, now: int) -> None:
        fd = self._watched.pop(pid)
        selector.unregister(fd)
        directory = os.environ.get(WORKERS_DIR_ENV, "")
        record = read_record(directory, pid) if directory else None
        if record is not None:
            self._records[pid] = record
        if pid in self._grandchildren:
            # One that ended through the runtime has told its status, success included: one with a
            # record but no status was killed; one without a record tells nothing.
            status = record.status if record is not None else None
            failed = record is not None and status != 0
        else:
            try:
                status = _exit_status(fd)
            except ChildProcessError:  # torch reaped it before this look
                status = None
            failed = bool(status)
        os.close(fd)
        self._statuses[pid] = status
        self._ended[pid] = now
        self._doomed.discard(pid)
        # A first failure: the workers running now (not those of a restart, started later) have
        # shutdown_timeout to end. A child that torch reaped first has an unknown status and
        # starts nothing (it may have succeeded); if it failed, torch's SIGTERM ends the others,
        # and their exits do.
        if failed and self._grace_ns is not None and not self._doomed:
            self._doomed = set(self._watched)
            self._deadline_ns = now + self._grace_ns

    def _kill_survivors(self) -> None:
        for pid in sorted(self._doomed):
            print(
                f"{self._name}: worker pid {pid} still running {(self._grace_ns or 0) / 1e9:g} s"
                " after a worker failed (shutdown_timeout): SIGKILL",
                file=sys.stderr,
                flush=True,
            )
            # Its session, as torch's own SIGKILL does (SubprocessHandler.close: killpg). The pid
            # is not reused yet: its pidfd was not readable at the last look, so it is unreaped.
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self._watched[pid], signal.SIGKILL)
        self._doomed = set()


def _task_children(pid: int, tid: int) -> set[int]:
    """The children that thread `tid` of process `pid` started."""
    try:
        with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as children:
            return {int(child) for child in children.read().split()}
    except OSError:  # gone, no /proc, or a kernel without CONFIG_PROC_CHILDREN
        return set()


def _pid_of(module: object, helper: str, attribute: str) -> int | None:
    """The pid of one of multiprocessing's helper processes, as `module` records the process it
    started, in private attributes; None where there is none."""
    pid = getattr(getattr(module, helper, None), attribute, None)
    return pid if isinstance(pid, int) else None


def _exit_status(pidfd: int) -> int | None:
    """A child's exit status, leaving it for torch to reap: its code, -N for signal N, or None
    while it runs. Raises ChildProcessError once it is reaped, or for a process not our child."""
    result = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if result is None:
        return None
    return result.si_status if result.si_code == os.CLD_EXITED else -result.si_status


@dataclass(frozen=True)
class Failure:
    """One failed worker, as the user is shown it."""

    rank: int
    local_rank: int
    pid: int
    exitcode: int  # torch elastic's: -N for signal N
    traceback: str  # from the worker's error file; "" without one (an exit code, a signal)
    summary: str  # the line that names the error, e.g. "RuntimeError: ..."; "" without one
    timestamp: int  # torch elastic's, in whole seconds
    ended_ns: int | None  # from the ExitClock; None where it did not see the worker end

    @property
    def status(self) -> str:
        """How it ended: "exited with code 3", "was killed by SIGKILL"."""
        if self.exitcode < 0:
            try:
                return f"was killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"was killed by signal {-self.exitcode}"
        return f"exited with code {self.exitcode}"


def in_order(failed: ChildFailedError, clock: ExitClock) -> list[Failure]:
    """The failed workers, the root cause first: the one that ended first by the clock.

    torch elastic's order (timestamp in whole seconds, then rank) if the clock missed any of
    them; it also breaks the clock's ties (workers found ended in the same look). Workers that
    torch elastic forked come from the clock too (`ExitClock.forked_failures`).
    """
    failures = [_failure(rank, f, clock.ended_ns(f.pid)) for rank, f in failed.failures.items()]
    failures += clock.forked_failures({f.pid for f in failures})
    clocked = all(f.ended_ns is not None for f in failures)
    return sorted(
        failures, key=lambda f: ((f.ended_ns or 0) if clocked else 0, f.timestamp, f.rank)
    )


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


def report(name: str, failures: Sequence[Failure]) -> str:
    """The root cause's exit status and traceback, then one line for each other failed rank."""
    first, *others = failures
    where = f"local rank {first.local_rank}, pid {first.pid}, host {socket.gethostname()}"
    lines = [f"{name}: root cause: rank {first.rank} {first.status} ({where})"]
    lines += [f"  {line}" for line in first.traceback.splitlines()]
    for other in others:
        later = ""
        if first.ended_ns is not None and other.ended_ns is not None:
            later = f" {(other.ended_ns - first.ended_ns) / 1e6:.1f} ms later"
        detail = f": {other.summary}" if other.summary else ""
        lines.append(f"{name}: also failed{later}: rank {other.rank} {other.status}{detail}")
    return "\n".join(lines)
