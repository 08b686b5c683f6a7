"""Every running rank's Python stacks, all threads, under its label: asked of the workers with
`protocol.DUMP_SIGNAL`, which each answers from C (faulthandler), also while stuck in a collective
or in C++. Shown before a stop (`signals`) and in a hang's report (`hangs`)."""

import contextlib
import os
import socket
import time
from collections.abc import Mapping

from py_distributed.launch.workers import Worker, Workers
from py_distributed.protocol import DUMP_SIGNAL, stacks_file

# How long the launcher waits for the stacks. A dump takes milliseconds; a worker that cannot
# answer (stopped, in uninterruptible sleep) must not hold the launcher up for longer than this.
DUMP_WAIT_SECONDS = 1.0
_DUMP_POLL_SECONDS = 0.05


def collected(workers: Workers, name: str, heading: str) -> str:
    """The stacks of the running workers under `name: heading` (whose {count} and {host} are
    filled in), one block per worker; "" where none runs, or this platform has no DUMP_SIGNAL."""
    running = workers.running()
    if DUMP_SIGNAL is None or not running:  # stopped before any started, or after all ended
        return ""
    files = {w.pid: stacks_file(workers.directory, w.pid) for w in running}
    # A worker without its file has not reached the user's code: DUMP_SIGNAL would kill it.
    dumping = [w for w in running if os.path.exists(files[w.pid])]
    sizes = {w.pid: _size(files[w.pid]) for w in dumping}
    for worker in dumping:
        with contextlib.suppress(OSError):
            os.kill(worker.pid, DUMP_SIGNAL)
    _wait_for_dumps(workers, dumping, files, sizes)
    blocks = [f"{name}: {heading.format(count=len(running), host=socket.gethostname())}\n"]
    for worker in running:
        stacks = _read(files[worker.pid]) or "(none: it had not reached its main yet)"
        blocks.append(f"{name}: {worker.label()}:\n{stacks.rstrip()}\n")
    return "\n".join(blocks)


def _wait_for_dumps(
    workers: Workers, dumping: list[Worker], files: Mapping[int, str], sizes: Mapping[int, int]
) -> None:
    """Returns once every worker's file has grown and then kept its size for one poll
    (faulthandler writes no end mark), or the worker has ended, or after DUMP_WAIT_SECONDS."""
    deadline = time.monotonic() + DUMP_WAIT_SECONDS
    last = dict(sizes)
    while dumping and time.monotonic() < deadline:
        time.sleep(_DUMP_POLL_SECONDS)
        now = {w.pid: _size(files[w.pid]) for w in dumping}
        written = [now[w.pid] > sizes[w.pid] and now[w.pid] == last[w.pid] for w in dumping]
        running = {w.pid for w in workers.running()}
        if all(done or w.pid not in running for done, w in zip(written, dumping, strict=True)):
            return
        last = now


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
