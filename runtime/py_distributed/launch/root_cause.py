"""How a launch ended, and which failed worker is its root cause: plain data and pure functions.

torch elastic picks the root cause by a timestamp in whole seconds and gives ties to the lowest
rank (`ProcessFailure.timestamp`, `ChildFailedError.get_first_failure`). When one rank dies, its
peers in a collective fail a few milliseconds later with only an echo ("Connection closed by
peer"), so torchrun often blames a rank that did nothing wrong, and takes its exit code. Here the
worker that ended first by the launcher's own clock (`launch.workers`) is the root cause, and
`report` shows the failures once.
"""

import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One failed worker, as the user is shown it."""

    rank: int
    local_rank: int
    pid: int
    exitcode: int  # torch elastic's: -N for signal N
    traceback: str  # from the worker's error file; "" without one (an exit code, a signal)
    summary: str  # the line that names the error, e.g. "RuntimeError: ..."; "" without one
    timestamp: int  # torch elastic's, in whole seconds
    ended_ns: int | None  # from `launch.workers`; None where it did not see the worker end

    @property
    def status(self) -> str:
        """How it ended: "exited with code 3", "was killed by SIGKILL"."""
        if self.exitcode < 0:
            try:
                return f"was killed by {signal.Signals(-self.exitcode).name}"
            except ValueError:
                return f"was killed by signal {-self.exitcode}"
        return f"exited with code {self.exitcode}"


@dataclass(frozen=True)
class Outcome:
    """How a launch ended, for a caller that reports more than the exit status (a Bazel test)."""

    exit_code: int
    local_workers: int = 0  # 0: none started (a bad input)
    failures: Sequence[Failure] = ()  # this node's failed workers, the root cause first
    # torchrun's log directory: <log_dir>/<run id>_*/attempt_<n>/<local rank>/std{out,err}.log,
    # readable only until the launch's `observe` returns; "" where the output was not kept.
    log_dir: str = ""


def in_order(failures: Sequence[Failure]) -> list[Failure]:
    """The failures, the root cause first: the one that ended first by the launcher's clock.

    torch elastic's order (timestamp in whole seconds, then rank) if the clock missed any of them;
    it also breaks the clock's ties (workers found ended in the same look).
    """
    clocked = all(f.ended_ns is not None for f in failures)
    return sorted(
        failures, key=lambda f: ((f.ended_ns or 0) if clocked else 0, f.timestamp, f.rank)
    )


def report(name: str, failures: Sequence[Failure], elsewhere: str = "") -> str:
    """The root cause's exit status and traceback, then one line for each other failed rank; or,
    where the root cause is `elsewhere` (on another node), that, then a line for each of these."""
    first, *others = failures
    if elsewhere:
        lines, since, others = [f"{name}: root cause: {elsewhere}"], None, list(failures)
    else:
        where = f"local rank {first.local_rank}, pid {first.pid}, host {socket.gethostname()}"
        lines = [f"{name}: root cause: rank {first.rank} {first.status} ({where})"]
        lines += [f"  {line}" for line in first.traceback.splitlines()]
        since = first.ended_ns
    for other in others:
        later = ""
        if since is not None and other.ended_ns is not None:
            later = f" {(other.ended_ns - since) / 1e6:.1f} ms later"
        detail = f": {other.summary}" if other.summary else ""
        lines.append(f"{name}: also failed{later}: rank {other.rank} {other.status}{detail}")
    return "\n".join(lines)
