"""The contract between a launcher and its workers: the variables it sets for them, the record each
worker writes about itself, and what an exit status means. It imports nothing of this package, so
that both sides import it and neither imports the other.

The launcher sets RUN_ID_ENV, LAUNCHER_PID_ENV and WORKERS_DIR_ENV in every worker's environment.
Each worker writes its `Record` to `record_file(WORKERS_DIR_ENV, its pid)` when it starts and again
when it ends, and its Python stacks to `stacks_file(...)` when it gets DUMP_SIGNAL.
"""

import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass

# Set by the launcher for its workers, to the torchrun run id. torchrun gives every worker
# TORCHELASTIC_RUN_ID, so a worker is a process whose two values agree. WORLD_SIZE/RANK alone prove
# nothing: schedulers such as Kubeflow's PyTorchJob set them on the launcher's pod too.
RUN_ID_ENV = "PY_DISTRIBUTED_RUN_ID"
# The launcher's pid: torch elastic runs in the launcher, which starts every worker.
LAUNCHER_PID_ENV = "PY_DISTRIBUTED_LAUNCHER_PID"
# A directory of the launch's own, where each worker writes its `Record` and its stacks.
WORKERS_DIR_ENV = "PY_DISTRIBUTED_WORKERS_DIR"
# Set by a launcher with a hang timeout: every how many seconds each worker writes its progress in
# its collectives (`progress_file`); unset, a worker writes none.
PROGRESS_ENV = "PY_DISTRIBUTED_PROGRESS_SECONDS"

# The signal on which a worker writes the Python stacks of all its threads into its stacks file,
# for the launcher to print when it is told to stop. Linux leaves real-time signals to applications
# (glibc keeps those below SIGRTMIN), no library of a training job that we know of takes this one,
# and SIGUSR1/SIGUSR2 stay the user's, for preemption. Linux only (SIGRTMIN).
DUMP_SIGNAL: int | None = signal.SIGRTMIN + 6 if sys.platform.startswith("linux") else None


def exit_code_of_signal(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + N."""
    return 128 + signum


@dataclass(frozen=True)
class Record:
    """What a worker tells its launcher about itself, for workers whose environment and exit status
    the launcher cannot read: one forked from it has the launcher's environment in /proc (torch
    sets the rank with putenv), one forked from multiprocessing's forkserver is not its child.
    Written when the worker starts, and again with `status` and `ended_ns` when it ends through
    the runtime: the launcher may look late (a loaded machine), or after torch reaped it."""

    rank: str
    local_rank: str
    group_rank: str
    attempt: str  # TORCHELASTIC_RESTART_COUNT
    error_file: str  # TORCHELASTIC_ERROR_FILE, where torch's handler records an exception
    forked: bool  # called by torch elastic's function entrypoint
    status: int | None = None  # its exit code, once it has ended through the runtime
    # When its work ended, by time.monotonic_ns (one clock for the host's processes): before its
    # exit handlers close its connections, so before any peer fails of their closing.
    ended_ns: int | None = None


def record_file(directory: str, pid: int) -> str:
    """Where the worker with `pid` writes its `Record`."""
    return os.path.join(directory, f"{pid}.json")


def stacks_file(directory: str, pid: int) -> str:
    """Where the worker with `pid` writes its stacks."""
    return os.path.join(directory, f"{pid}.stacks")


def progress_file(directory: str, pid: int) -> str:
    """Where the worker with `pid` writes its progress in its collectives: JSON, {"rank": R,
    "time_ns": wall clock, "groups": {name: {"desc", "ranks", "enqueued", "completed"}}}, the
    sequence numbers of each process group's last collective enqueued and completed."""
    return os.path.join(directory, f"{pid}.progress")


def in_flight_file(directory: str, pid: int) -> str:
    """Where the worker with `pid` writes the collectives it has in flight, once asked (a file at
    this path with `.request` added): JSON, a list of {"group", "desc", "seq", "op"}."""
    return os.path.join(directory, f"{pid}.in_flight")


def write_json(path: str, value: object) -> None:
    """Writes `value` as JSON whole or not at all: a reader never sees half of it."""
    with contextlib.suppress(OSError):
        with open(f"{path}.partial", "w", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(f"{path}.partial", path)


def read_record(directory: str, pid: int) -> Record | None:
    """The record of worker `pid`; None if it wrote none (yet), or it cannot be read."""
    try:
        with open(record_file(directory, pid), encoding="utf-8") as f:
            return Record(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def write_record(directory: str, pid: int, record: Record) -> None:
    """Writes `record` whole or not at all: the launcher never reads half a record. A worker that
    cannot write leaves the launcher with torch's view of it only."""
    write_json(record_file(directory, pid), asdict(record))
