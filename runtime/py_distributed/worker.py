"""Worker mode: run the user's code (a torchrun-style main or a train_fn), exit with its status."""

import atexit
import contextlib
import ctypes
import os
import runpy
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from py_distributed.errors import UsageError, exit_code_of_signal

# Set by the launcher for its workers, to the torchrun run id. torchrun gives every worker
# TORCHELASTIC_RUN_ID, so a worker is a process whose two values agree. WORLD_SIZE/RANK alone prove
# nothing: schedulers such as Kubeflow's PyTorchJob set them on the launcher's pod too.
RUN_ID_ENV = "PY_DISTRIBUTED_RUN_ID"
# The launcher's pid: torch elastic runs in the launcher, which starts every worker.
LAUNCHER_PID_ENV = "PY_DISTRIBUTED_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def is_distributed_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a worker that a py_distributed launcher started, False in the launcher itself."""
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID") == run_id


def is_foreign_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a worker of a torchrun other than the launcher whose marker it carries.

    Launching again there would nest one job per worker, at every level.
    """
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID", run_id) != run_id


def refuse_foreign_worker() -> None:
    """Raises UsageError in a worker of a launch other than the one whose marker it carries."""
    if is_foreign_worker():
        raise UsageError(
            f"{RUN_ID_ENV} and TORCHELASTIC_RUN_ID disagree: this is a worker of another"
            " launch; start the binary outside it, or unset both"
        )


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
    _exit(_status_of(work))


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

        get_error_handler().record_exception(error)


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
