"""The probe launcher: starts the probe binaries of tests/e2e (whose ranks write reports with
harness/probe.py) and reads what they leave: their reports, the launcher's root-cause line and
each rank's stacks, and which processes of a run are still alive.

A probe's settings are PROBE_* variables (`probe_env`: `failures="1:exit7"` becomes
PROBE_FAILURES=1:exit7, probe.py's grammar); PET_RDZV_ID is the test's run id, which the launcher
and every worker carry (see `processes_of_runs`).
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.bazel import BIN, run, wait_for
from harness.procfs import processes_with_env
from py_distributed.launch import facilities
from py_distributed.protocol import RUN_ID_ENV

ROOT_CAUSE_PROBE = BIN / "tests/e2e/root_cause"  # 3 ranks; tests/e2e/root_cause.py
SIGNALS_PROBE = BIN / "tests/e2e/signals_probe"  # 2 ranks; tests/e2e/signals_probe.py
SIGNALS_TARGET = "//tests/e2e:signals_probe"

# The launcher's report of a failed job names its root cause in this line.
ROOT_CAUSE = re.compile(r": root cause: rank (\d+) ")
# What a loaded 2-core machine may add to a bound: torch notices within its monitor interval, the
# launcher then reports and exits. torch's own 30 s grace would overshoot it.
MARGIN = 10
# torch elastic looks at its workers every monitor_interval (0.1 s by default) and then stops the
# rest: with a longer look it finds the echoes ended too, where its own order gives the first
# failure to the lowest rank, so the root-cause tests fail without the launcher's own clock
# (torch's order named rank 1 in 0 of 12 gloo runs of system-exit-7, rank 2 in 3 of 12 of sigkill,
# at 1 s).
MONITOR_INTERVAL = "0.5"
# The launcher's label of one rank's stacks (py_distributed/launch/workers.py, signals.py).
_LABEL = re.compile(
    rf"^{re.escape(SIGNALS_TARGET)}: rank (\d+) \(local rank \d, node rank 0, pid \d+\):$"
)


def probe_env(probe_dir: Path, run_id: str | None = None, **probe: object) -> dict[str, str]:
    """PROBE_DIR, PET_RDZV_ID=run_id unless None, and PROBE_<NAME>=value for each keyword."""
    env = {"PROBE_DIR": str(probe_dir)}
    if run_id is not None:
        env["PET_RDZV_ID"] = run_id
    env.update({f"PROBE_{name.upper()}": str(value) for name, value in probe.items()})
    return env


def launch(
    binary: Path,
    probe_dir: Path,
    run_id: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    **probe: object,
) -> subprocess.Popen[str]:
    """Starts `binary ARGS` in its own session with `probe_env(...)` and `env` over this process's
    environment; returns the Popen, for `finish`."""
    return subprocess.Popen(
        [str(binary), *args],
        env={**os.environ, **probe_env(probe_dir, run_id, **probe), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    """Waits for a launched probe to end; (exit status, output). If it has not ended within
    `timeout`, or the wait fails, it is killed (`kill`) and the error raised."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill(proc)
    return proc.returncode, out


def kill(proc: subprocess.Popen[str]) -> None:
    """If a launched probe still runs, SIGKILLs its session's process group (led by its pid) and
    reaps it; for a `finally` after a failed wait."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def reports(probe_dir: Path) -> list[dict[str, object]]:
    """The rank reports ($PROBE_DIR/rank<N>.json), ordered by rank."""
    found = [json.loads(p.read_text(encoding="utf-8")) for p in probe_dir.glob("rank*.json")]
    return sorted(found, key=lambda r: int(str(r["rank"])))


def processes_of_runs(run_ids: Iterable[str]) -> list[int]:
    """Pids of the live processes of these runs: the launcher and the forkserver, started with
    PET_RDZV_ID=run id; the workers, started with it or with the launcher's RUN_ID_ENV (a forked
    worker shows only the variables of the process it was forked from: putenv never shows in
    /proc)."""
    return sorted(
        {
            pid
            for run_id in run_ids
            for name in ("PET_RDZV_ID", RUN_ID_ENV)
            for pid in processes_with_env(name, run_id)
        }
    )


@dataclass(frozen=True)
class Outcome:
    """A run of the root-cause probe, to its end."""

    code: int
    out: str
    root_rank: int | None  # as the report names it
    failed_to_exit: float | None  # seconds from the last round's failure to the launcher's exit


def run_root_cause(probe_dir: Path, run_id: str, env: Mapping[str, str]) -> Outcome:
    """Runs the root-cause probe with `env` to its end, reports in `probe_dir` (made here)."""
    probe_dir.mkdir()
    done = run([ROOT_CAUSE_PROBE], env={**probe_env(probe_dir, run_id), **env})
    ended = time.time()
    found = ROOT_CAUSE.search(done.stdout)
    failed = sorted(probe_dir.glob("failed*.json"))
    failed_at = json.loads(failed[-1].read_text())["time"] if failed else None
    return Outcome(
        done.returncode,
        done.stdout,
        int(found[1]) if found else None,
        ended - failed_at if failed_at is not None else None,
    )


def start_signals_probe(probe_dir: Path, run_id: str, **probe: object) -> subprocess.Popen[str]:
    """Starts the signals probe with PROBE_* settings; returns the Popen once both ranks wait, in
    the functions their stacks must name. If they never do, it is killed and the test fails."""
    proc = launch(SIGNALS_PROBE, probe_dir, run_id, **probe)
    ready = lambda: len(list(probe_dir.glob("rank*.ready"))) == 2  # noqa: E731
    if not wait_for(ready, timeout=60):
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the ranks never got ready: {finish(proc)}")
    return proc


def assert_on_loopback(
    launcher: list[tuple[str, int]], listening: list[tuple[str, int]], out: str
) -> None:
    """What a single-node job listens on, the launcher's sockets (`launcher`) among all its
    processes' (`listening`): loopback only; on a torch whose rendezvous shares no store with the
    workers (2.4), rank 0's own store listens on every interface, as the launch said."""
    loopback = ("127.0.0.1", "::1")
    assert all(address in loopback for address, _ in launcher), launcher
    if facilities.shares_agent_store():
        assert len(launcher) == 2, launcher  # the rendezvous store and the workers' store
        assert len(listening) > len(launcher), listening  # and the workers' gloo sockets
        assert all(address in loopback for address, _ in listening), listening
    else:
        assert len(launcher) == 1, launcher  # the rendezvous store
        assert {"0.0.0.0", "::"} & {address for address, _ in listening}, listening
        assert "the workers' store is rank 0's, on every interface" in out.partition("[rank")[0]


def assert_stacks_on_stop(out: str, sig: signal.Signals) -> None:
    """What the signals probe's launcher printed when `sig` stopped it: the stacks of both ranks,
    every thread in its own function, before the stop; on a torch that takes the stop signals
    itself (2.4), the line at the launch's start that says there will be none."""
    if "signals_to_handle" not in facilities.launch_config_fields():
        assert "no stacks of the ranks on a stop signal" in out.partition("[rank")[0], out
        return
    blocks = stacks_by_rank(out)
    assert sorted(blocks) == [0, 1], out
    for stacks in blocks.values():
        assert "in wait_for_preemption" in stacks and "in helper_thread_waits" in stacks, out
    assert out.index("Python stacks of the 2 running workers") < out.index(f"stopped by {sig.name}")


def stacks_by_rank(out: str) -> dict[int, str]:
    """Each rank's block of stacks in the signals probe's output: its label, then faulthandler's
    lines."""
    blocks: dict[int, list[str]] = {}
    current = None
    for line in out.splitlines():
        label = _LABEL.match(line)
        if label:
            current = blocks.setdefault(int(label[1]), [])
        elif current is not None and (not line or line.startswith(("  ", "Thread ", "Current "))):
            current.append(line)
        else:
            current = None
    return {rank: "\n".join(lines) for rank, lines in blocks.items()}
