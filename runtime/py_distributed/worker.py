"""Worker mode: run the user's code (a torchrun-style main or a train_fn), exit with its status."""

import atexit
import contextlib
import ctypes
import faulthandler
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from py_distributed.errors import exit_code_of_signal
from py_distributed.launcher import LAUNCHER_PID_ENV, RUN_ID_ENV

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# The signal on which a worker writes the Python stacks of all its threads into its file in
# STACKS_DIR_ENV, for the launcher to print when it is told to stop (`py_distributed.signals`).
# It is the worker's constant because the worker must have it free: Linux leaves real-time signals
# to applications (glibc keeps those below SIGRTMIN), no library of a training job that we know of
# takes this one, and SIGUSR1/SIGUSR2 stay the user's, for preemption. Linux only (SIGRTMIN).
DUMP_SIGNAL: int | None = signal.SIGRTMIN + 6 if sys.platform.startswith("linux") else None
# Set by the launcher, to a directory of its own: each of its workers writes its stacks there, in
# `stacks_file(directory, pid)`. Its children that carry the directory are its workers.
STACKS_DIR_ENV = "PY_DISTRIBUTED_STACKS_DIR"


def is_distributed_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a worker that a py_distributed launcher started, False in the launcher itself."""
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID") == run_id


def run_main(path: str, args: Sequence[str]) -> NoReturn:
    """Runs the script at `path` as `torchrun path ARGS` would, and exits with its status."""
    sys.argv = [path, *args]
    # A plain `python script.py` puts the script's directory first on sys.path.
    sys.path.insert(0, os.path.dirname(path))
    run(lambda: runpy.run_path(path, run_name="__main__"))


def run(work: Callable[[], object]) -> NoReturn:
    """Runs `work` in this worker and exits with its status: 0 when it returns, SystemExit's code,
    or 1 with the traceback recorded for the launcher when it raises."""
    _die_with_launcher()
    _answer_stack_requests()
    _exit(_status_of(work))


def stacks_file(directory: str, pid: int) -> str:
    """Where the worker with `pid` writes its stacks, in the launcher's STACKS_DIR_ENV."""
    return os.path.join(directory, f"{pid}.stacks")


def _answer_stack_requests() -> None:
    """Has this worker write the Python stacks of all its threads to its file in STACKS_DIR_ENV
    when it gets DUMP_SIGNAL, so that a job told to stop shows where each rank was.

    faulthandler's handler is C: it answers while the main thread is stuck in a collective or in
    C++, and each line is in the file (a write(2) to it) before the handler returns, so the launcher
    reads whole stacks even when it SIGKILLs this worker right after. The file exists from here on:
    the launcher sends DUMP_SIGNAL only to workers that have one, as its default action would kill.
    """
    directory = os.environ.get(STACKS_DIR_ENV, "")
    if DUMP_SIGNAL is None or not directory:
        return
    try:
        # faulthandler keeps the file object, so its descriptor, for as long as it is registered.
        stacks = open(stacks_file(directory, os.getpid()), "w", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        print(f"py_distributed: no stacks on stop: {error}", file=sys.stderr)
        return
    faulthandler.register(DUMP_SIGNAL, file=stacks, all_threads=True, chain=False)


def _die_with_launcher() -> None:
    """Has the kernel SIGKILL this worker when the launcher dies, even by SIGKILL.

    torch elastic stops workers when the launcher is signalled, but a SIGKILLed launcher runs no
    handler, and its workers, in sessions of their own, would train on as orphans.
    """
    if not sys.platform.startswith("linux"):
        return
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
    if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        print(f"py_distributed: prctl: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
    launcher = os.environ.get(LAUNCHER_PID_ENV, "")
    if launcher.isdecimal() and not _alive(int(launcher)):  # it died before prctl took effect
        os._exit(exit_code_of_signal(signal.SIGKILL))


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
    """Finishes as the interpreter would (threads, exit handlers, flush), then skips its teardown.

    torch 2.13 with gloo aborts in static destructors at interpreter exit in about one run of ten
    ("terminate called without an active exception", exit -6) after the script finished its work,
    so a finished job would be reported failed. Nothing after the exit handlers is worth that risk.
    """
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads, as at exit
    except KeyboardInterrupt:  # Ctrl-C reaches workers too: stop waiting, still skip teardown
        code = code or exit_code_of_signal(signal.SIGINT)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    os._exit(code & 0xFF)  # as the interpreter truncates sys.exit(code)
