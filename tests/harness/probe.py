"""What the probe programs of tests/e2e share. They are the mains of its Bazel binaries (which
depend on //tests/harness:probe) and the scripts it runs outside Bazel; they write reports that the
tests read, and fail when a test asks them to. The standard library only: some probes start fast
because they import no torch.

Reports. A rank writes what it saw to $PROBE_DIR/NAME with `write_report` (JSON) or `write_text`,
through a temporary file renamed into place, so that a test polling the directory never reads half
a report.

Faults, one grammar for every probe:
  PROBE_FAILURES=RANK:MODE[,RANK:MODE...]
lists one failure per attempt: on attempt N (torch elastic's TORCHELASTIC_RESTART_COUNT, 0 on the
first), the Nth entry's RANK fails by MODE; the other ranks, and every rank of the attempts past the
list, do not fail. MODE is one of
  exit<N>      SystemExit(N), as sys.exit(N)
  os_exit<N>   os._exit(N): no exit handlers, no flush
  raise        RuntimeError("probe failure on rank R"), an uncaught exception
  assert       AssertionError("probe failure on rank R"): a failed assertion, to unittest a failure
  sigkill      SIGKILL to itself
`1:raise`: rank 1 raises on the first attempt. `2:os_exit3,1:exit7`: rank 2 exits 3, then after a
restart rank 1 exits 7, and a third attempt succeeds. A value that is not this grammar makes the
probe raise a ValueError that names it. Where in its run a probe fails is its own: each says so in
its docstring.
  PROBE_DEAF_RANK=R
makes rank R ignore SIGTERM from its start and never return, as a rank stuck in C++ would.
"""

import json
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

FAILURES = "PROBE_FAILURES"
DEAF_RANK = "PROBE_DEAF_RANK"
_MODE = re.compile(r"(?:os_)?exit\d+|raise|assert|sigkill")
_ENTRY = re.compile(rf"(\d+):({_MODE.pattern})")


def write_text(name: str, text: str) -> None:
    """Writes `text` to $PROBE_DIR/name, atomically: readers never see half a file."""
    path = os.path.join(os.environ["PROBE_DIR"], name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_report(name: str, report: Mapping[str, object]) -> None:
    """Writes `report` as JSON to $PROBE_DIR/name, atomically: readers never see half a report."""
    write_text(name, json.dumps(report, ensure_ascii=False))


@dataclass(frozen=True)
class Failure:
    """One entry of PROBE_FAILURES: on its attempt, `rank` fails by `mode`."""

    rank: int
    mode: str


def failures() -> list[Failure]:
    """PROBE_FAILURES, one entry per attempt; [] when it is unset or empty."""
    value = os.environ.get(FAILURES, "")
    plan = []
    for entry in value.split(",") if value else []:
        found = _ENTRY.fullmatch(entry)
        if not found:
            raise ValueError(
                f"{FAILURES}={value!r}: {entry!r} is not RANK:MODE with MODE one of exit<N>,"
                " os_exit<N>, raise, assert, sigkill"
            )
        plan.append(Failure(int(found[1]), found[2]))
    return plan


def attempt() -> int:
    """This worker's attempt: 0 on the first, N after N restarts of the worker group."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def this_attempts_failure() -> Failure | None:
    """The entry of PROBE_FAILURES for this attempt, None past the list."""
    plan = failures()
    return plan[attempt()] if attempt() < len(plan) else None


def planned(rank: int) -> str | None:
    """The mode by which `rank` fails on this attempt, None if it does not."""
    failure = this_attempts_failure()
    return failure.mode if failure is not None and failure.rank == rank else None


def fail_if_planned(rank: int) -> None:
    """Fails this process, rank `rank`, if PROBE_FAILURES says so for this attempt."""
    mode = planned(rank)
    if mode is not None:
        fail(mode)


def fail(mode: str) -> NoReturn:
    """Fails this process by `mode` (a MODE of the grammar above)."""
    if not _MODE.fullmatch(mode):
        raise ValueError(f"{FAILURES}: unknown mode {mode!r}")
    rank = os.environ.get("RANK")
    if mode == "raise":
        raise RuntimeError(f"probe failure on rank {rank}")
    if mode == "assert":
        raise AssertionError(f"probe failure on rank {rank}")
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
        never_return()
    if mode.startswith("os_exit"):
        os._exit(int(mode.removeprefix("os_exit")))
    sys.exit(int(mode.removeprefix("exit")))


def deaf_rank() -> int | None:
    """The rank that PROBE_DEAF_RANK names, if any."""
    value = os.environ.get(DEAF_RANK)
    return int(value) if value is not None else None


def deafen() -> bool:
    """Ignores SIGTERM from now on if PROBE_DEAF_RANK names this process's rank; whether it does."""
    deaf = deaf_rank() == int(os.environ["RANK"])
    if deaf:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return deaf


def never_return() -> NoReturn:
    """What a deaf rank does once it has reported: waits for SIGKILL."""
    while True:
        time.sleep(60)
