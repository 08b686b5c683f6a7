"""What multiprocessing's forkserver imports first (`py_distributed.warm_start`): the server dies
with the launcher, ends at once when the launcher stops it, and keeps its own environment, which
tells a worker forked from it which variables torch elastic has set.

Its children, the workers, die with the server (`worker.die_with_launcher`), but the server itself
would outlive a SIGKILLed launcher: it exits once every holder of its "alive" pipe has, and the
workers hold that pipe too, so neither would ever end.

The launcher stops the server when its launch ends, and waits for it. The server then raises
SystemExit, and its interpreter's teardown, with torch imported, would keep the launcher waiting
about a second (`py_distributed.process_exit`): the last exit handler, this one, the first
registered, skips it; the server has nothing to flush. The workers inherit the handler, and run
their exit handlers before they end: there it does nothing.
"""

import atexit
import os

from py_distributed import worker

_SERVER = os.getpid()
# The server's environment, which each worker forked from it starts with.
ENVIRONMENT = dict(os.environ)


def _skip_teardown() -> None:
    if os.getpid() == _SERVER:
        os._exit(0)


worker.die_with_launcher()
atexit.register(_skip_teardown)
