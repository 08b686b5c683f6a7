"""How long the other workers get to stop once one has failed: torchrun's --shutdown-timeout.

When a worker fails, torch elastic's SubprocessContext._poll stops the others with `self.close()`,
and a restart with `LocalElasticAgent._stop_workers` -> `self._shutdown()`
(torch/distributed/elastic/multiprocessing/api.py, agent/server/local_elastic_agent.py in torch
2.13): both take the fixed default of 30 s and ignore `shutdown_timeout`, which only the signal
path passes on (agent/server/api.py). So `bounded` SIGKILLs the workers still running
`shutdown_timeout` seconds after the first failure, and every way a job stops ends within it.
"""

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from torch.distributed.launcher.api import LaunchConfig

from py_distributed.errors import UsageError
from py_distributed.launch.workers import Workers

# torchrun's --shutdown-timeout (PET_SHUTDOWN_TIMEOUT, TORCH_ELASTIC_SHUTDOWN_TIMEOUT) when the
# user set none: how long workers get between SIGTERM and SIGKILL. torch's 30 s is long for a
# developer waiting at a terminal for a failed job to give the prompt back.
SHUTDOWN_TIMEOUT_DEFAULT = 5
SHUTDOWN_TIMEOUT_VARIABLES = frozenset({"PET_SHUTDOWN_TIMEOUT", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"})


def timeout(config: LaunchConfig) -> float:
    """This launch's shutdown_timeout: torchrun's --shutdown-timeout (or PET_SHUTDOWN_TIMEOUT),
    which the launcher sets to SHUTDOWN_TIMEOUT_DEFAULT where the user set neither variable; where
    torch has no such flag (2.11 and older), the variables or that default, which the bound after
    a failure keeps and a stop signal cannot (`facilities.weaker` says so)."""
    value = getattr(config, "shutdown_timeout", None)
    if value is not None:
        return float(value)
    for variable in sorted(SHUTDOWN_TIMEOUT_VARIABLES):
        if text := os.environ.get(variable):
            try:
                return float(text)
            except ValueError:
                raise UsageError(f"{variable}={text!r}: use a number of seconds") from None
    return SHUTDOWN_TIMEOUT_DEFAULT


@contextlib.contextmanager
def bounded(workers: Workers, timeout: float, *, name: str) -> Iterator[None]:
    """Inside the block, the workers running when one fails (not those of a restart, started
    later) have `timeout` seconds to end, then are SIGKILLed.

    A worker whose status the finder could not read (torch reaped it first, and it did not end
    through the runtime, which records it) starts nothing: it may have succeeded, and if it
    failed, torch's SIGTERM ends the others, and their exits do.
    """
    lock = threading.Lock()
    bounds: list[set[int]] = []  # the workers each failure doomed that still run
    timers: list[threading.Timer] = []
    closed = False  # the block has ended: a failure seen after it starts no bound

    def kill_survivors(doomed: set[int]) -> None:
        with lock:
            survivors = workers.kill(doomed)
            doomed.clear()
        for pid in sorted(survivors):
            print(
                f"{name}: worker pid {pid} still running {timeout:g} s after a worker failed"
                " (shutdown_timeout): SIGKILL",
                file=sys.stderr,
                flush=True,
            )

    def ended(pid: int, failed: bool, now_ns: int) -> None:
        with lock:
            for doomed in bounds:
                doomed.discard(pid)
            # A first failure, not the echo of one that is being bounded.
            if failed and not closed and not any(bounds):
                doomed = workers.watched()
                bounds.append(doomed)
                timer = threading.Timer(timeout, kill_survivors, (doomed,))
                timer.daemon = True
                timers.append(timer)
                timer.start()

    workers.on_end(ended)
    try:
        yield
    finally:
        with lock:
            closed = True
            for timer in timers:
                timer.cancel()
