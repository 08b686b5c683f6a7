"""This launch's workers: which processes they are, and when and how each ended.

One finder for one fact, which every user of it asks: the root cause (which worker ended first),
the shutdown bound (which workers still run after a failure) and the stop signals (whose stacks
to show, whom to pass SIGUSR1 on to).

torch elastic starts workers from the launching thread, the one that enters `Workers`: its
SubprocessContext Popens them (the Bazel stub execs, keeping the pid), its MultiprocessContext
forks them (start method fork), or, with the forkserver start method, multiprocessing's forkserver
forks them, a child of that thread beside multiprocessing's resource tracker, neither of them a
worker. So a worker is a child of that thread that is not one of multiprocessing's helpers, or a
child of the forkserver. A daemon thread holds a pidfd for each and looks which became readable.
It never reaps (waitid with WNOWAIT): torch elastic still starts, monitors, stops and reaps every
worker. On a loaded machine it may look tens of milliseconds late, find a failure and its echoes
ended in one look, or find a worker torch reaped first. So a worker that ends through the runtime
tells its exit status and when its work ended in its `protocol.Record` (one not the launcher's
child must); any other is timed by the previous look, which puts a rank that died without a word
(a signal, os._exit) before the echoes found with it. Without pidfds, torch's order stands.
"""

import contextlib
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import selectors
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import psutil

from py_distributed.protocol import WORKERS_DIR_ENV, Record, read_record, record_file

# How often the finder looks for new workers. Exits are seen at once (a pidfd each): this bounds
# how late a worker that ends in its first moments is noticed, and how early an unrecorded end is.
_SCAN_SECONDS = 0.01
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK")

# Called in the finder's thread when a worker ends: its pid, whether it failed, when (monotonic ns).
EndListener = Callable[[int, bool, int], None]


@dataclass(frozen=True)
class Worker:
    """A running worker, as a person reads its label."""

    pid: int
    rank: str  # "?" where it has not said yet
    local_rank: str
    group_rank: str

    def label(self) -> str:
        return (
            f"rank {self.rank} (local rank {self.local_rank}, node rank {self.group_rank},"
            f" pid {self.pid})"
        )


class Workers:
    """The workers of one launch, found as the module says, with the time and status of each end.
    `directory` is the launch's WORKERS_DIR_ENV, where workers write their records and stacks,
    from entering the block until it ends."""

    def __init__(self) -> None:
        self.directory = ""
        self._tid = threading.get_native_id()  # the thread that will start the workers
        self._lock = threading.Lock()  # _watched, between the finder's thread and `kill`
        self._listeners: list[EndListener] = []
        self._ended: dict[int, int] = {}  # pid -> monotonic ns
        self._watched: dict[int, int] = {}  # pid -> pidfd, for workers still running
        self._known: set[int] = set()  # pids listed as workers, watched or not
        self._theirs: set[int] = set()  # the program's own children when the launch began
        self._grandchildren: set[int] = set()  # watched workers not this process's children
        self._statuses: dict[int, int | None] = {}  # pid -> exit status of an ended worker
        self._records: dict[int, Record] = {}  # pid -> the record of an ended worker
        # pid -> multiprocessing's object for each worker torch elastic forked
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="py_distributed workers")
        self._thread.daemon = True

    def __enter__(self) -> "Workers":
        self.directory = tempfile.mkdtemp(prefix="py_distributed-workers-")
        # The program's own children (maybe_run_training's caller may have some) are not ours.
        self._theirs = set(self._listed())
        self._known = set(self._theirs)
        if hasattr(os, "pidfd_open"):
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
        shutil.rmtree(self.directory, ignore_errors=True)

    def on_end(self, listener: EndListener) -> None:
        """Calls `listener` in the finder's thread each time a worker ends."""
        self._listeners.append(listener)

    def running(self) -> list[Worker]:
        """The workers running the program now, by rank, from a fresh look: those that say so in
        their record (it has no status until they end through the runtime), and those torch
        elastic started with a command, whose environment names this launch and their rank. A
        forked worker that has not written its record yet is not running the program yet."""
        found = []
        for pid in self._listed():
            ended = pid in self._ended and pid not in self._watched  # a reused pid is new
            if pid in self._theirs or ended or _zombie_or_gone(pid):
                continue
            record = read_record(self.directory, pid)
            if record is not None:
                if record.status is None:
                    found.append(Worker(pid, record.rank, record.local_rank, record.group_rank))
                continue
            environ = _environment(pid)
            if environ.get(WORKERS_DIR_ENV) == self.directory and "RANK" in environ:
                found.append(Worker(pid, *(environ.get(v, "?") for v in _RANK_VARIABLES)))
        return sorted(found, key=lambda w: (int(w.rank) if w.rank.isdecimal() else -1, w.pid))

    def watched(self) -> set[int]:
        """The workers running at the finder's last look."""
        with self._lock:
            return set(self._watched)

    def ended_ns(self, pid: int) -> int | None:
        """When worker `pid` ended (time.monotonic_ns): by its record, else the finder's look before
        the one that found it ended; None if the finder did not see it."""
        return self._ended.get(pid)

    def ended(self) -> dict[int, Record]:
        """The records of the workers that have ended, by pid."""
        return dict(self._records)

    def status(self, pid: int) -> int | None:
        """Worker `pid`'s exit status: the finder's, else multiprocessing's, whose process objects
        have it once torch elastic has stopped the workers: the forkserver's children tell the
        finder only an end through the runtime, and torch may reap a child before the finder looks.
        """
        status = self._statuses.get(pid)
        process = self._processes.get(pid)
        return process.exitcode if status is None and process is not None else status

    def kill(self, pids: set[int]) -> set[int]:
        """SIGKILLs those of `pids` still running at the finder's last look, each with its session,
        as torch's own SIGKILL does (SubprocessHandler.close: killpg); returns them. Their pids are
        not reused yet: their pidfds were not readable, so they are unreaped."""
        with self._lock:
            killed = {pid: self._watched[pid] for pid in pids if pid in self._watched}
            for pid, fd in killed.items():
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
        return set(killed)

    def _children(self) -> set[int]:
        return _task_children(os.getpid(), self._tid)

    def _listed(self) -> dict[int, bool]:
        """This launch's workers now, each with whether it is this process's child."""
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
                looked = time.monotonic_ns()  # every worker watched then was running
                while not self._stopped.is_set():
                    self._adopt_new_children(selector)
                    ready, now = selector.select(_SCAN_SECONDS), time.monotonic_ns()
                    for key, _ in ready:
                        self._note_end(selector, key.data, looked)
                    looked = now
            finally:
                with self._lock:
                    for fd in self._watched.values():
                        os.close(fd)
                    self._watched.clear()

    def _adopt_new_children(self, selector: selectors.BaseSelector) -> None:
        listed = self._listed()
        # multiprocessing forgets a process once it is joined: keep each while it is listed. The
        # copy is one C call, which no other thread interrupts.
        started = list(getattr(multiprocessing.process, "_children", ()))
        self._processes.update((p.pid, p) for p in started if p.pid in listed)
        # A helper is known as such only once multiprocessing has noted its pid, after its start.
        for pid in [pid for pid in self._watched if pid not in listed and pid in self._children()]:
            os.close(self._unwatch(selector, pid))
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
            with self._lock:
                self._watched[pid] = fd
            selector.register(fd, selectors.EVENT_READ, pid)

    def _unwatch(self, selector: selectors.BaseSelector, pid: int) -> int:
        with self._lock:
            fd = self._watched.pop(pid)
            selector.unregister(fd)
            return fd

    def _note_end(self, selector: selectors.BaseSelector, pid: int, running_ns: int) -> None:
        record = read_record(self.directory, pid)
        with contextlib.suppress(OSError):  # a worker that reuses the pid starts with none
            os.unlink(record_file(self.directory, pid))
        if record is not None:
            self._records[pid] = record
        status = record.status if record is not None else None  # None: it did not end through us
        fd = self._unwatch(selector, pid)
        if pid in self._grandchildren:
            # One with a record but no status was killed; one without a record tells nothing.
            failed = record is not None and status != 0
        else:
            with contextlib.suppress(ChildProcessError):  # torch reaped it first: the record tells
                status = _exit_status(fd)
            failed = bool(status)
        os.close(fd)
        ended = record.ended_ns if record is not None and record.ended_ns else running_ns
        self._statuses[pid] = status
        self._ended[pid] = ended
        for listener in self._listeners:
            listener(pid, failed, ended)


def _task_children(pid: int, tid: int) -> set[int]:
    """The children that thread `tid` of process `pid` started; where the kernel does not list
    them (built without CONFIG_PROC_CHILDREN), every child of the process."""
    try:
        with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as children:
            return {int(child) for child in children.read().split()}
    except OSError:  # gone, or a kernel built without CONFIG_PROC_CHILDREN
        pass
    with contextlib.suppress(psutil.Error):  # gone, or no /proc: not Linux
        return {child.pid for child in psutil.Process(pid).children()}
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


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _environment(pid: int) -> dict[str, str]:
    """The environment process `pid` was started with (a forked one: its parent's)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            entries = environ.read().split(b"\0")
    except OSError:
        return {}
    return dict(e.decode(errors="replace").partition("=")[::2] for e in entries if b"=" in e)
