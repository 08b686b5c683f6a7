"""The launcher's signals: the stacks of every running rank before a stop, and preemption notices
passed on to the workers.

torch elastic takes the signals named in `LaunchConfig.signals_to_handle` (SIGTERM, SIGINT, SIGHUP
and SIGQUIT by default): its handler raises SignalException in the main thread, and the agent then
sends that signal to every worker, waits `shutdown_timeout` and SIGKILLs what is left. It installs
that handler each time workers start, over whatever was there, and offers no hook after that point:
a handler of ours installed before would be overwritten, and one installed after has no place to
run from. `handled` therefore uses torch elastic's own knob, `signals_to_handle`: it takes its
signals out of that list, installs its own handlers for them for the launch, and leaves the rest of
the list (SIGQUIT by default) to torch elastic.

- SIGTERM, SIGINT, SIGHUP (those of them in the list): every running worker writes the stacks of
  all its threads (`worker.DUMP_SIGNAL`), the launcher prints them under each rank's label, then
  raises torch elastic's SignalException as its own handler would, so the agent's shutdown (death
  signal, grace, SIGKILL) and the launcher's exit status 128+N are torch elastic's, unchanged.
- SIGUSR1, SIGUSR2 (SLURM's `--signal`, `scancel --signal=USR1`): sent on to every running worker,
  and the launch goes on; the workers decide. A main with a handler checkpoints and goes on or
  exits; a worker without one dies by the default action and the job fails with that rank's code.
  torch elastic would stop the whole job for them instead, so they are always taken from its list.
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import FrameType

import psutil
from torch.distributed.elastic.multiprocessing import api as torch_processes
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.launcher.api import LaunchConfig

from py_distributed import environment
from py_distributed.worker import (
    DUMP_SIGNAL,
    WORKERS_DIR_ENV,
    Record,
    read_record,
    stacks_file,
)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
FORWARDED_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

# How long the launcher waits for the stacks before the workers are stopped. A dump takes
# milliseconds; a worker that cannot answer (stopped, in uninterruptible sleep) must not hold the
# stop up for longer than this.
DUMP_WAIT_SECONDS = 1.0
_DUMP_POLL_SECONDS = 0.05
# torch elastic warns, with a traceback, of a signal name it cannot install, the empty one included.
_TORCH_FALLBACK = "SIGQUIT"
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK")
# What a new interpreter does on a signal that it does not leave to the default action.
_FRESH: dict[int, Callable[[int, FrameType | None], object] | int] = {
    signal.SIGINT: signal.default_int_handler
}


@contextlib.contextmanager
def handled(config: LaunchConfig, *, name: str) -> Iterator[LaunchConfig]:
    """Handles the launcher's stop and preemption signals for the block; yields the config to hand
    torch elastic, whose `signals_to_handle` no longer names them.

    Inside the block os.environ has WORKERS_DIR_ENV, a directory of this launch's own, which the
    workers inherit; os.environ, the signal handlers as they were, and the directory come back or
    go when the block ends. Outside the main thread, where signal handlers cannot be installed
    (torch elastic then warns that it cannot either), `config` is yielded unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield config
        return
    listed = [part.strip() for part in config.signals_to_handle.split(",")]
    stops = [sig for sig in STOP_SIGNALS if sig.name in listed and DUMP_SIGNAL is not None]
    taken = {sig.name for sig in (*stops, *FORWARDED_SIGNALS)}
    left_to_torch = ",".join(part for part in listed if part and part not in taken)
    previous = {sig: signal.getsignal(sig) for sig in (*stops, *FORWARDED_SIGNALS)}
    directory = tempfile.mkdtemp(prefix="py_distributed-workers-")
    workers = _Workers(name, directory)
    try:
        with environment.restored():
            environment.apply({WORKERS_DIR_ENV: directory})
            for sig in stops:
                signal.signal(sig, workers.stop)
            for sig in FORWARDED_SIGNALS:
                signal.signal(sig, workers.forward)
            yield dataclasses.replace(config, signals_to_handle=left_to_torch or _TORCH_FALLBACK)
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: installed outside Python, cannot be put back
                signal.signal(sig, handler)
        shutil.rmtree(directory, ignore_errors=True)


def forget_in_worker() -> None:
    """In a worker forked from the launcher: gives each signal that the launch handles, here or in
    torch elastic, the action it has in a new interpreter, as in a worker that torch elastic
    started with a command. Handlers of the program's own stay, as the rest of its state does."""
    launchers = (_Workers.stop, _Workers.forward, torch_processes._terminate_process_handler)
    for sig in signal.valid_signals():
        with contextlib.suppress(ValueError, OSError):  # not a signal Python may handle
            handler = signal.getsignal(sig)
            if getattr(handler, "__func__", handler) in launchers:
                signal.signal(sig, _FRESH.get(sig, signal.SIG_DFL))


@dataclass(frozen=True)
class _Worker:
    process: psutil.Process
    rank_env: Mapping[str, str]  # RANK, LOCAL_RANK, GROUP_RANK

    def label(self) -> str:
        rank, local, node = (self.rank_env.get(k, "?") for k in _RANK_VARIABLES)
        return f"rank {rank} (local rank {local}, node rank {node}, pid {self.process.pid})"

    def rank(self) -> int:
        rank = self.rank_env.get("RANK", "")
        return int(rank) if rank.isdecimal() else -1


@dataclass
class _Workers:
    """The handlers of one launch, and how they find its workers."""

    name: str  # for messages
    directory: str  # WORKERS_DIR_ENV of this launch
    stacks_shown: bool = False

    def running(self) -> list[_Worker]:
        """This launch's running workers, by rank.

        Those that torch elastic starts with a command (Popen) are the launcher's children whose
        environment, from their start, names this launch's directory and a rank. Those it forks
        (py_distributed.warm_start) have the launcher's starting environment, or the forkserver's,
        and say who they are in their `Record` in the directory: the launcher's descendants that
        wrote one. Their own children are theirs, not the launch's.
        """
        launcher = psutil.Process()
        found: dict[int, _Worker] = {}
        for child in launcher.children():
            with contextlib.suppress(psutil.Error):  # gone meanwhile, or not ours to read
                environ = child.environ()
                if environ.get(WORKERS_DIR_ENV) == self.directory and "RANK" in environ:
                    found[child.pid] = _Worker(child, environ)
        for pid, record in self._records().items():
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if launcher in process.parents():  # not a pid reused by another process
                    found[pid] = _Worker(process, _rank_env(record))
        running = [w for w in found.values() if not _ended(w.process)]
        return sorted(running, key=lambda w: (w.rank(), w.process.pid))

    def _records(self) -> dict[int, Record]:
        records = {}
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                stem, _, suffix = name.partition(".")
                if suffix == "json" and stem.isdecimal():
                    record = read_record(self.directory, int(stem))
                    if record is not None and record.status is None:  # not ended through `run`
                        records[int(stem)] = record
        return records

    def stop(self, signum: int, frame: FrameType | None) -> None:
        """Shows every running rank's stacks, then stops the launch as torch elastic's handler
        would. A second stop signal stops at once."""
        sigval = signal.Signals(signum)
        if not self.stacks_shown:
            self.stacks_shown = True
            try:
                self._show_stacks(sigval)
            except Exception as error:  # noqa: BLE001 - the stop goes on, whatever the stacks do
                _write(f"{self.name}: no stacks: {type(error).__name__}: {error}\n")
        raise SignalException(f"Process {os.getpid()} got signal: {sigval}", sigval=sigval)

    def forward(self, signum: int, frame: FrameType | None) -> None:
        """Sends the signal on to every running worker; the launch goes on."""
        workers = self.running()
        for worker in workers:
            with contextlib.suppress(psutil.Error):  # it has just ended: nothing to tell
                worker.process.send_signal(signum)
        name = signal.Signals(signum).name
        _write(f"{self.name}: {name} sent on to {len(workers)} running workers\n")

    def _show_stacks(self, sigval: signal.Signals) -> None:
        assert DUMP_SIGNAL is not None  # `handled` installs `stop` only where there is one
        workers = self.running()
        if not workers:  # stopped before any started, or after all ended
            return
        files = {w.process.pid: stacks_file(self.directory, w.process.pid) for w in workers}
        # A worker without its file has not reached the user's code: DUMP_SIGNAL would kill it.
        dumping = [w for w in workers if os.path.exists(files[w.process.pid])]
        sizes = {w.process.pid: _size(files[w.process.pid]) for w in dumping}
        for worker in dumping:
            with contextlib.suppress(psutil.Error):
                worker.process.send_signal(DUMP_SIGNAL)
        _wait_for_dumps([w.process for w in dumping], files, sizes)
        blocks = [
            f"{self.name}: {sigval.name}: Python stacks of the {len(workers)} running workers on"
            f" {socket.gethostname()}, before they are stopped:\n"
        ]
        for worker in workers:
            stacks = _read(files[worker.process.pid]) or "(none: it had not reached its main yet)"
            blocks.append(f"{self.name}: {worker.label()}:\n{stacks.rstrip()}\n")
        _write("\n".join(blocks))


def _wait_for_dumps(
    processes: list[psutil.Process], files: Mapping[int, str], sizes: Mapping[int, int]
) -> None:
    """Returns once every process's file has grown and then kept its size for one poll
    (faulthandler writes no end mark), or the process has ended, or after DUMP_WAIT_SECONDS."""
    deadline = time.monotonic() + DUMP_WAIT_SECONDS
    last = dict(sizes)
    while processes and time.monotonic() < deadline:
        time.sleep(_DUMP_POLL_SECONDS)
        now = {p.pid: _size(files[p.pid]) for p in processes}
        written = [now[p.pid] > sizes[p.pid] and now[p.pid] == last[p.pid] for p in processes]
        if all(done or _ended(p) for done, p in zip(written, processes, strict=True)):
            return
        last = now


def _rank_env(record: Record) -> dict[str, str]:
    values = (record.rank, record.local_rank, record.group_rank)
    return dict(zip(_RANK_VARIABLES, values, strict=True))


def _ended(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as stacks:
            return stacks.read()
    except OSError:
        return ""


def _write(text: str) -> None:
    """Writes to the launcher's stderr by its descriptor: a signal handler may have interrupted
    the main thread inside sys.stderr, which would refuse a reentrant write."""
    data = text.encode(errors="replace")
    while data:
        data = data[os.write(2, data) :]
