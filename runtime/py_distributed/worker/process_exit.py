"""How the launcher and every worker end: as the interpreter would at exit, less its teardown.

After the exit handlers, Python tears the interpreter down: it clears every module, collects what
is left, and the C++ runtime runs its static destructors. With torch imported that takes about a
second of a 2-core machine (measured: `python -c "import torch"` 3.4 s, 2.0 s with os._exit) to
free memory that the kernel frees at once anyway. In a worker that used gloo it is worse: torch
2.13 aborts there in about one run of ten ("terminate called without an active exception", exit
-6) after the work finished, so a finished job would be reported failed.
"""

import atexit
import contextlib
import os
import signal
import sys
import threading
import weakref
from typing import NoReturn

from py_distributed.protocol import exit_code_of_signal


def finish(code: int) -> int:
    """Does what the interpreter does at exit before its teardown: joins the non-daemon threads,
    runs the exit handlers, flushes standard output and error. Returns the exit status: `code`,
    truncated as sys.exit truncates it, or 130 for a success interrupted by Ctrl-C meanwhile."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads, as at exit
    except KeyboardInterrupt:  # Ctrl-C reaches workers too: stop waiting, still skip teardown
        code = code or exit_code_of_signal(signal.SIGINT)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    return code & 0xFF


def exit(code: int) -> NoReturn:
    """Ends this process with status `code` after `finish`, skipping the interpreter's teardown."""
    os._exit(finish(code))


def forget_inherited() -> None:
    """In a process just forked from another: drops the exit handlers and weakref finalizers that
    it inherited, which are the other process's to run (its temporary directories' cleanup,
    torch's operator libraries'), so that this one runs at its exit only those it registers
    itself, as a process started afresh does."""
    atexit._clear()
    weakref.finalize._registry.clear()  # type: ignore[attr-defined]
    weakref.finalize._registered_with_atexit = False  # type: ignore[attr-defined]
