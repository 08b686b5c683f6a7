"""Worker mode: run the user's torchrun-style main as `__main__`, then exit with its status."""

import atexit
import contextlib
import os
import runpy
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import NoReturn

# Set by the launcher for its workers, to the torchrun run id. torchrun gives every worker
# TORCHELASTIC_RUN_ID, so a worker is a process whose two values agree. WORLD_SIZE/RANK alone prove
# nothing: schedulers such as Kubeflow's PyTorchJob set them on the launcher's pod too.
RUN_ID_ENV = "PY_DISTRIBUTED_RUN_ID"


def is_distributed_worker(environ: Mapping[str, str] = os.environ) -> bool:
    """True in a worker that a py_distributed launcher started, False in the launcher itself."""
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID") == run_id


def run_main(path: str, args: Sequence[str]) -> NoReturn:
    """Runs the script at `path` as `torchrun path ARGS` would, and exits with its status."""
    sys.argv = [path, *args]
    # A plain `python script.py` puts the script's directory first on sys.path.
    sys.path.insert(0, os.path.dirname(path))
    _exit(_run(path))


def _run(path: str) -> int:
    try:
        runpy.run_path(path, run_name="__main__")
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
    """Prints the traceback and writes torch elastic's error file, for the agent's root cause."""
    traceback.print_exc()
    from torch.distributed.elastic.multiprocessing.errors import get_error_handler

    get_error_handler().record_exception(error)


def _exit(code: int) -> NoReturn:
    """Runs exit handlers and flushes, then skips interpreter teardown.

    torch 2.13 with gloo aborts in static destructors at interpreter exit in about one run of ten
    ("terminate called without an active exception", exit -6) after the script finished its work,
    so a finished job would be reported failed. Nothing after the exit handlers is worth that risk.
    """
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    os._exit(code & 0xFF)  # as the interpreter truncates sys.exit(code)
