"""What multiprocessing's forkserver imports first (`launch.warm_start`): the server dies with the
launcher, ends at once when the launcher stops it, keeps its own environment, which tells a worker
forked from it which variables torch elastic has set, and keeps its exit handlers to itself.

Its children, the workers, die with the server (`die_with_launcher`), but the server itself would
outlive a SIGKILLed launcher: it exits once every holder of its "alive" pipe has, and the
workers hold that pipe too, so neither would ever end.

The launcher stops the server when its launch ends, and waits for it. The server then raises
SystemExit, and its interpreter's teardown, with torch imported, would keep the launcher waiting
about a second (`py_distributed.worker.process_exit`): the last exit handler, this one, the first
registered, skips it; the server has nothing to flush.

The server's exit handlers and weakref finalizers are its own, registered by what it imported for
every worker: run at a worker's exit, they would release what the server and its other workers
still share (a temporary directory a declared import made), and torch's (its operator libraries')
write to about 20 MiB of the heap each worker shares with the server, copying it into the worker.
So each worker forgets them as soon as it is forked, before multiprocessing runs anything of the
program's in it (the launcher's main module, imported again); a worker runs at its exit those
that it registers itself.
"""

import atexit
import os

from py_distributed.worker import process_exit
from py_distributed.worker.run import die_with_launcher

_SERVER = os.getpid()
# The server's environment, which each worker forked from it starts with.
ENVIRONMENT = dict(os.environ)


def _skip_teardown() -> None:
    if os.getpid() == _SERVER:
        os._exit(0)


def _forget_server() -> None:
    if os.getppid() == _SERVER:  # a worker; not a process that a worker forks in turn
        process_exit.forget_inherited()


die_with_launcher()
atexit.register(_skip_teardown)
os.register_at_fork(after_in_child=_forget_server)
