"""The hang timeout: no collective completing on any rank for `hang_timeout` seconds while at least
one rank waits in one. A rank computing for minutes while nobody waits is no hang, and neither is
a slow rank that keeps going.

Each worker reports its progress (`worker.progress`): for each process group, the sequence number
of its last collective enqueued and of its last completed, from torch's flight recorder. `Watch`
reads those files once per interval. Once the job hangs, it asks every rank for the collectives it
has in flight (their ops), collects every rank's stacks (`stacks`), prints one report, and stops
the workers: the launch then exits with EXIT_HANG. `report` is pure: it names, in each group, the
ranks the others wait for, and collectives that do not match.
"""

import contextlib
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from py_distributed.launch import stacks
from py_distributed.launch.workers import Workers
from py_distributed.protocol import in_flight_file, progress_file

# The exit code of a job stopped by its hang timeout, as timeout(1)'s.
EXIT_HANG = 124


def interval(timeout: float) -> float:
    """How often the workers report their progress, and the launcher looks at it."""
    return min(1.0, timeout / 10) or 1.0


Progress = Mapping[str, Any]  # a rank's progress file: {"rank", "time_ns", "groups"}
InFlight = Sequence[Mapping[str, Any]]  # a rank's collectives in flight: {"group", "seq", "op"}


def completed(ranks: Mapping[int, Progress]) -> dict[tuple[int, str], int]:
    """Each rank's last completed collective in each group: progress is any change of it."""
    return {
        (rank, name): int(group["completed"])
        for rank, progress in ranks.items()
        for name, group in progress["groups"].items()
    }


def waiting(ranks: Mapping[int, Progress]) -> bool:
    """Whether any rank waits in a collective: one enqueued that has not completed."""
    return any(
        group["enqueued"] > group["completed"]
        for progress in ranks.values()
        for group in progress["groups"].values()
    )


def report(
    ranks: Mapping[int, Progress], in_flight: Mapping[int, InFlight], silent: float
) -> list[str]:
    """The hang's report: how long nothing completed; each rank's collective, or none; in each
    group, the ranks the others wait for, and the ops that do not match."""
    lines = [f"hang: no collective completed on any rank for {silent:.0f} s, while ranks wait:"]
    for rank in sorted(ranks):
        lines.append(f"  rank {rank}: {_where(rank, ranks[rank], in_flight.get(rank, ()))}")
    for name in sorted({n for progress in ranks.values() for n in progress["groups"]}):
        lines += _group_findings(name, ranks, in_flight)
    return lines


def _where(rank: int, progress: Progress, flying: InFlight) -> str:
    """Where a rank is: the collectives it waits in, or none."""
    waits = [
        f"{_op(flying, name, group['enqueued'])} #{group['enqueued']} of {_group(name, group)}"
        for name, group in sorted(progress["groups"].items())
        if group["enqueued"] > group["completed"]
    ]
    return "in " + ", ".join(waits) if waits else "not in a collective"


def _group_findings(
    name: str, ranks: Mapping[int, Progress], in_flight: Mapping[int, InFlight]
) -> list[str]:
    members = {r: p["groups"][name] for r, p in ranks.items() if name in p["groups"]}
    flying = {r: g["enqueued"] for r, g in members.items() if g["enqueued"] > g["completed"]}
    if not flying:
        return []
    seq = max(flying.values())
    group = next(iter(members.values()))
    lines = []
    everyone = set(group.get("ranks") or members)
    behind = sorted(r for r in everyone if members.get(r, {"enqueued": -1})["enqueued"] < seq)
    if behind:
        waiters = sorted(r for r, s in flying.items() if s == seq)
        lines.append(
            f"  waiting for {_ranks(behind)}: {_ranks(waiters)}"
            f" wait{'' if len(waiters) > 1 else 's'} in #{seq} of {_group(name, group)}"
        )
    ops = {r: _op(in_flight.get(r, ()), name, seq) for r, s in flying.items() if s == seq}
    if len(set(ops.values()) - {"a collective"}) > 1:
        each = ", ".join(f"rank {r} in {op} #{seq}" for r, op in sorted(ops.items()))
        lines.append(f"  mismatched collectives in {_group(name, group)}: {each}")
    return lines


def _ranks(ranks: Sequence[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def _op(flying: InFlight, name: str, seq: int) -> str:
    for entry in flying:
        if entry["group"] == name and entry["seq"] == seq:
            return str(entry["op"])
    return "a collective"


def _group(name: str, group: Mapping[str, Any]) -> str:
    desc, ranks = group.get("desc") or "", group.get("ranks") or []
    parts = [desc] if desc not in ("", "undefined") else []  # torch's name for no description
    parts += [f"ranks {_span(ranks)}"] if ranks else []
    return f"group {name} ({', '.join(parts)})" if parts else f"group {name}"


def _span(ranks: Sequence[int]) -> str:
    ordered = sorted(ranks)
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}" if len(ordered) > 1 else str(ordered[0])
    return ", ".join(map(str, ordered))


class Watch:
    """A thread that looks at the workers' progress every `interval(timeout)` seconds, and stops a
    job that hangs for `timeout` seconds with its report; with a timeout of 0, nothing."""

    def __init__(self, workers: Workers, timeout: float, *, name: str) -> None:
        self._workers, self._timeout, self._name = workers, timeout, name
        self._interval = interval(timeout)
        self.found = False  # the job was stopped as hung
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hangs", daemon=True)

    def __enter__(self) -> "Watch":
        if self._timeout:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()

    def _run(self) -> None:
        seen: dict[tuple[int, str], int] = {}
        pids: set[int] = set()
        since = time.monotonic()
        while not self._stopped.wait(self._interval):
            ranks = self._progress()
            now = time.monotonic()
            running = {pid for pid, _ in ranks.values()}
            done = completed({rank: p for rank, (_, p) in ranks.items()})
            if done != seen or running != pids:  # progress, or another attempt's workers
                seen, pids, since = done, running, now
                continue
            if waiting({r: p for r, (_, p) in ranks.items()}) and now - since > self._timeout:
                self._stop(ranks, now - since)
                return

    def _progress(self) -> dict[int, tuple[int, Progress]]:
        """Each running rank's pid and progress, by rank."""
        found = {}
        for worker in self._workers.running():
            with contextlib.suppress(OSError, ValueError, KeyError):
                path = progress_file(self._workers.directory, worker.pid)
                with open(path, encoding="utf-8") as f:
                    progress = json.load(f)
                found[int(progress["rank"])] = (worker.pid, progress)
        return found

    def _stop(self, ranks: Mapping[int, tuple[int, Progress]], silent: float) -> None:
        directory = self._workers.directory
        for pid, _ in ranks.values():
            with contextlib.suppress(OSError):
                open(f"{in_flight_file(directory, pid)}.request", "w").close()
        time.sleep(2 * self._interval + 0.5)  # each answers at its next look
        in_flight = {}
        for rank, (pid, _) in ranks.items():
            with (
                contextlib.suppress(OSError, ValueError),
                open(in_flight_file(directory, pid), encoding="utf-8") as f,
            ):
                in_flight[rank] = json.load(f)
        lines = report({r: p for r, (_, p) in ranks.items()}, in_flight, silent)
        text = "\n".join(f"{self._name}: {line}" for line in lines) + "\n"
        heading = "hang: Python stacks of the {count} running workers on {host}:"
        text += stacks.collected(self._workers, self._name, heading)
        self.found = True
        sys.stderr.write(text)
        sys.stderr.flush()
        self._workers.kill(self._workers.watched())
