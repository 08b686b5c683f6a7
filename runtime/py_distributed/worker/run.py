"""A worker's life: run the user's code (a torchrun-style main or a train_fn), tell the launcher
about it (`protocol`), and exit with its status."""

import ctypes
import faulthandler
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import NoReturn

from py_distributed.protocol import (
    DUMP_SIGNAL,
    LAUNCHER_PID_ENV,
    PROGRESS_ENV,
    WORKERS_DIR_ENV,
    Record,
    exit_code_of_signal,
    read_record,
    stacks_file,
    write_record,
)
from py_distributed.worker import process_exit, progress

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# os._exit as Python has it, before `run_forked` stands in for it.
_os_exit = os._exit
_forked = False  # `run_forked` is running: a success returns to torch


def run_main(path: str, args: Sequence[str]) -> NoReturn:
    """Runs the script at `path` as `torchrun path ARGS` would, and exits with its status."""
    run(script_main(path, args))


def script_main(path: str, args: Sequence[str]) -> Callable[[], object]:
    """The script at `path` run as __main__ with `args`, as `torchrun path ARGS` runs it."""

    def main() -> object:
        sys.argv = [path, *args]
        # A plain `python script.py` puts the script's directory first on sys.path.
        sys.path.insert(0, os.path.dirname(path))
        return runpy.run_path(path, run_name="__main__")

    return main


def run(work: Callable[[], object]) -> NoReturn:
    """Runs `work` in this worker and exits with its status: 0 when it returns, SystemExit's code,
    or 1 with the traceback recorded for the launcher when it raises."""
    die_with_launcher()
    _announce()
    _answer_stack_requests()
    _report_progress()
    _exit(_status_of(work))


class _Succeeded(BaseException):
    """A forked worker's work succeeded: unwinds it to `run_forked`, which returns to torch."""


def run_forked(work: Callable[[], object]) -> None:
    """Runs `work` as `run` does, in a worker that torch elastic forked and called as a function
    (py_distributed.launch.warm_start), and returns when it succeeds.

    torch elastic learns of such a worker's success only from its return value, which its wrapper
    puts on a queue after the function returns (`_wrap`, MultiprocessContext._poll in
    torch/distributed/elastic/multiprocessing/api.py); a worker that ends with exit status 0
    before that leaves the launcher waiting for it forever (pytorch PR #116224). So a success,
    by `run`'s end or by the user's own `os._exit(0)`, unwinds to here, and any other status
    ends the process at once, as it does in every worker.
    """
    global _forked
    pid = os.getpid()

    def exit_now(status: int) -> NoReturn:
        # Not in a process the user's code forked, nor in another thread, which cannot unwind the
        # main one: torch then waits for this worker as it would without the runtime.
        if os.getpid() != pid or threading.current_thread() is not threading.main_thread():
            _os_exit(status)
        _end(status)

    _forked = True
    os._exit = exit_now
    try:
        run(work)
    except _Succeeded:
        return
    finally:  # torch's own process, which ends with os._exit, is not the user's code
        os._exit = _os_exit
        _forked = False


def _announce() -> None:
    """Writes this worker's `Record`, without a status yet."""
    environ = os.environ
    _write_record(
        Record(
            environ.get("RANK", "?"),
            environ.get("LOCAL_RANK", "?"),
            environ.get("GROUP_RANK", "?"),
            environ.get("TORCHELASTIC_RESTART_COUNT", "0"),
            environ.get("TORCHELASTIC_ERROR_FILE", ""),
            _forked,
        )
    )


def _write_record(record: Record) -> None:
    directory = os.environ.get(WORKERS_DIR_ENV, "")
    if directory:
        write_record(directory, os.getpid(), record)


def _answer_stack_requests() -> None:
    """Has this worker write the Python stacks of all its threads to its file in WORKERS_DIR_ENV
    when it gets DUMP_SIGNAL, so that a job told to stop shows where each rank was.

    faulthandler's handler is C: it answers while the main thread is stuck in a collective or in
    C++, and each line is in the file (a write(2) to it) before the handler returns, so the launcher
    reads whole stacks even when it SIGKILLs this worker right after. The file exists from here on:
    the launcher sends DUMP_SIGNAL only to workers that have one, as its default action would kill.
    """
    directory = os.environ.get(WORKERS_DIR_ENV, "")
    if DUMP_SIGNAL is None or not directory:
        return
    try:
        # faulthandler keeps the file object, so its descriptor, for as long as it is registered.
        stacks = open(stacks_file(directory, os.getpid()), "w", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        print(f"py_distributed: no stacks on stop: {error}", file=sys.stderr)
        return
    faulthandler.register(DUMP_SIGNAL, file=stacks, all_threads=True, chain=False)


def _report_progress() -> None:
    """Reports this worker's progress in its collectives where the launcher watches for hangs
    (PROGRESS_ENV, `worker.progress`)."""
    directory, interval = os.environ.get(WORKERS_DIR_ENV, ""), os.environ.get(PROGRESS_ENV, "")
    if directory and interval:
        progress.start(directory, float(interval))


def die_with_launcher() -> None:
    """Has the kernel SIGKILL this process when its parent dies, and exits now if the launcher
    (LAUNCHER_PID_ENV) has died already.

    torch elastic stops workers when the launcher is signalled, but a SIGKILLed launcher runs no
    handler, and its workers, in sessions of their own, would train on as orphans. A worker's
    parent is the launcher, or multiprocessing's forkserver, which dies with the launcher the same
    way (py_distributed.launch.forkserver).
    """
    if not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        print(f"py_distributed: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if launcher.isdecimal() and not _alive(int(launcher)):  # it died before prctl took effect
        _os_exit(exit_code_of_signal(signal.SIGKILL))


def _alive(pid: int) -> bool:
    """False for a pid that is gone or a zombie (killed, not yet reaped by its own parent)."""
    if os.getppid() == pid:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _status_of(work: Callable[[], object]) -> int:
    try:
        work()
    except _Succeeded:  # a nested `run`'s success, in a forked worker: not a failure
        raise
    except SystemExit as e:
        return _exit_status(e.code)
    except BaseException as e:  # noqa: BLE001 - a worker reports every failure, KeyboardInterrupt too
        _record(e)
        return 1
    return 0


def _exit_status(code: object) -> int:
    """As `sys.exit(code)`: None is 0, an int is itself, anything else is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _record(error: BaseException) -> None:
    """Shows the traceback once: the launcher prints torch elastic's error file with the failed
    rank, so it is printed here only without such a file, or when the group will restart."""
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    restarts_left = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) - int(
        os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    )
    if not error_file or restarts_left > 0:
        traceback.print_exc()
    if error_file:
        from torch.distributed.elastic.multiprocessing.errors import get_error_handler

        # torch's handler writes the file in place. The other ranks fail too and are stopped at
        # once, some while writing: torch elastic's launcher then fails reading the half-written
        # file (JSONDecodeError in ProcessFailure) and reports nothing. Renamed, it is whole.
        partial = f"{error_file}.partial"
        os.environ["TORCHELASTIC_ERROR_FILE"] = partial  # where torch's handler writes
        try:
            get_error_handler().record_exception(error)
        finally:
            os.environ["TORCHELASTIC_ERROR_FILE"] = error_file
        os.replace(partial, error_file)


def _exit(code: int) -> NoReturn:
    """Finishes as the interpreter would, then skips its teardown (`process_exit`):
    where torch 2.13 with gloo aborts about once in ten runs, after the work has finished."""
    ended_ns = time.monotonic_ns()  # before the exit handlers, which may close its connections
    _end(process_exit.finish(code), ended_ns)


def _end(code: int, ended_ns: int | None = None) -> NoReturn:
    """Records the exit status and when the work ended (default: now) for the launcher and ends
    this worker, or, in a forked worker that succeeded, unwinds to `run_forked`."""
    code &= 0xFF  # as the interpreter truncates sys.exit(code)
    directory = os.environ.get(WORKERS_DIR_ENV, "")
    record = read_record(directory, os.getpid()) if directory else None
    if record is not None:
        _write_record(replace(record, status=code, ended_ns=ended_ns or time.monotonic_ns()))
    if code == 0 and _forked:
        raise _Succeeded
    _os_exit(code)
