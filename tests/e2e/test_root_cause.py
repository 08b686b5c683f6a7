"""The root cause of a failed job is the rank that failed first, and stopping the others is bounded.

One rank fails while the others wait for it in a collective, and they fail a few milliseconds
later with only an echo ("Connection closed by peer"). torch elastic's own order (whole seconds,
ties to the lowest rank) often blames one of them, so each scenario runs 10 or 30 times and every
run must name the failed rank and take its code. These runs launch in-process with workers whose
collective is a plain loopback socket (tests/e2e/echo_probe.py): importing torch in every worker
of 90 launches would take CI's 2 cores several minutes. The same scenarios then run a few
times through the Bazel binary, on gloo (tests/e2e/root_cause.py).
"""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness.bazel import ROOT, wait_for
from harness.launch import (
    MARGIN,
    MONITOR_INTERVAL,
    ROOT_CAUSE,
    ROOT_CAUSE_PROBE,
    finish,
    kill,
    launch,
    run_root_cause,
)
from torch.distributed.elastic.multiprocessing.api import SubprocessContext

from py_distributed.launch import facilities, pipeline
from py_distributed.launch.entry import InterpreterEntry
from py_distributed.launch.shutdown import SHUTDOWN_TIMEOUT_DEFAULT

ECHO_PROBE = Path(__file__).with_name("echo_probe.py")
# torch 2.13 reports the ranks that its stop of the others ended too (SubprocessContext._poll looks
# again after close()); torch 2.4 only those that had failed when it looked, so how many echoes it
# reports depends on the moment.
REPORTS_STOPPED = hasattr(SubprocessContext, "_capture_process_failures")
# Runs per scenario, in-process: 30 where the failed rank writes no record of its end (SIGKILL,
# os._exit), so that the launcher must order it by its exit as the kernel saw it, the hard case;
# 10 where it writes one.
RUNS = {"2:os_exit3": 30, "2:sigkill": 30}
RUNS_WITH_A_RECORD = 10
GLOO_RUNS = 2  # per scenario, through the Bazel binary on gloo
CONCURRENCY = 3  # launches at a time: 12 processes importing torch on a 2-core machine


SCENARIOS = [
    pytest.param("1:exit7", 0, 1, 7, id="system-exit-7"),
    pytest.param("1:raise", 0, 1, 1, id="exception"),
    pytest.param("2:os_exit3", 0, 2, 3, id="os-exit-3"),
    pytest.param("2:sigkill", 0, 2, 137, id="sigkill"),
    # Round 0: rank 2 exits 3; after the restart, rank 1 exits 7: the last round decides.
    pytest.param("2:os_exit3,1:exit7", 1, 1, 7, id="restart-last-round-decides"),
]


def reports_each_other_rank(out: str) -> bool:
    """One line for each of the other 2 ranks, which failed after the root cause; on a torch that
    leaves out the ranks its stop ended, one for each it saw fail, at most 2."""
    others = out.count(": also failed")
    return others == 2 or (not REPORTS_STOPPED and others < 2)


def echo_probe() -> InterpreterEntry:
    """Workers that run echo_probe.py with the bare interpreter, the runtime and tests/harness (as
    `harness`) on their path."""
    path = os.pathsep.join([str(ROOT / "runtime"), str(ROOT / "tests")])
    return InterpreterEntry((str(ECHO_PROBE),), {"PYTHONPATH": path})


@pytest.mark.parametrize(("failures", "max_restarts", "rank", "code"), SCENARIOS)
def test_first_failed_rank_is_the_root_cause_and_its_code_the_jobs(
    tmp_path, capfd, failures, max_restarts, rank, code
):
    settings = {"nproc_per_node": "3", "max_restarts": str(max_restarts)}
    runs, wrong, started = RUNS.get(failures, RUNS_WITH_A_RECORD), [], time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROBE_FAILURES", failures)
        patch.setenv("PET_MONITOR_INTERVAL", MONITOR_INTERVAL)
        for i in range(runs):
            probe_dir = tmp_path / f"run{i}"
            probe_dir.mkdir()
            patch.setenv("PROBE_DIR", str(probe_dir))
            job = pipeline.Job("echo", settings, "test", echo_probe)
            status = pipeline.launch(job)
            out = capfd.readouterr().err
            found = ROOT_CAUSE.search(out)
            if (status, int(found[1]) if found else None) != (code, rank):
                wrong.append(f"exit {status}:\n{out}")
            elif not reports_each_other_rank(out):
                wrong.append(out)
    with capfd.disabled():
        print(
            f"\n{failures}: {runs - len(wrong)}/{runs} right in {time.monotonic() - started:.0f} s"
        )
    assert not wrong, "\n\n".join(wrong[:2]) + f"\n({len(wrong)} of {runs} wrong)"


@pytest.mark.parametrize(("failures", "max_restarts", "rank", "code"), SCENARIOS)
def test_on_gloo_through_the_binary_too(tmp_path, run_ids, failures, max_restarts, rank, code):
    env = {
        "PROBE_FAILURES": failures,
        "PET_MAX_RESTARTS": str(max_restarts),
        "PET_MONITOR_INTERVAL": MONITOR_INTERVAL,
    }
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        outcomes = list(
            pool.map(
                lambda i: run_root_cause(tmp_path / f"run{i}", run_ids(), env), range(GLOO_RUNS)
            )
        )
    wrong = [o for o in outcomes if (o.code, o.root_rank) != (code, rank)]
    assert not wrong, "\n\n".join(f"exit {o.code}, rank {o.root_rank}:\n{o.out}" for o in wrong)
    for o in outcomes:
        assert reports_each_other_rank(o.out), o.out


def test_a_rank_deaf_to_sigterm_is_killed_within_the_default_shutdown_timeout(tmp_path, run_ids):
    outcome = run_root_cause(
        tmp_path / "probe", run_ids(), {"PROBE_FAILURES": "1:exit7", "PROBE_DEAF_RANK": "2"}
    )
    assert (outcome.code, outcome.root_rank) == (7, 1), outcome.out
    assert "rank 2 was killed by SIGKILL" in outcome.out
    assert outcome.failed_to_exit is not None
    print(f"\ndeaf rank, default timeout: failure to exit {outcome.failed_to_exit:.2f} s")
    assert SHUTDOWN_TIMEOUT_DEFAULT <= outcome.failed_to_exit < SHUTDOWN_TIMEOUT_DEFAULT + MARGIN


def test_pet_shutdown_timeout_sets_the_bound_after_a_failure(tmp_path, run_ids):
    timeout = 12  # the default, 5, or torch's 30 would each fall outside [12, 12 + MARGIN)
    env = {"PROBE_FAILURES": "1:exit7", "PROBE_DEAF_RANK": "2", "PET_SHUTDOWN_TIMEOUT": "12"}
    outcome = run_root_cause(tmp_path / "probe", run_ids(), env)
    assert (outcome.code, outcome.root_rank) == (7, 1), outcome.out
    assert outcome.failed_to_exit is not None
    print(f"\ndeaf rank, PET_SHUTDOWN_TIMEOUT=12: failure to exit {outcome.failed_to_exit:.2f} s")
    assert timeout <= outcome.failed_to_exit < timeout + MARGIN, outcome.out


def test_signal_to_launcher_stops_a_deaf_rank_within_the_same_shutdown_timeout(tmp_path, run_ids):
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    proc = launch(ROOT_CAUSE_PROBE, probe_dir, run_ids(), deaf_rank=2)  # ranks 0, 1 wait for it
    try:
        assert wait_for(lambda: len(list(probe_dir.glob("up*.json"))) == 3, timeout=120)
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        code, out = finish(proc, timeout=120)
        elapsed = time.monotonic() - stopped
    finally:
        kill(proc)
    assert code == 128 + signal.SIGTERM, out
    print(f"\ndeaf rank, SIGTERM to the launcher: signal to exit {elapsed:.2f} s")
    if "shutdown_timeout" not in facilities.launch_config_fields():  # torch 2.11 and older
        # torch's own grace is 30 s there; the ranks that SIGTERM ended start the launcher's bound.
        assert "on a stop signal torch gives the workers its fixed 30 s" in out, out
    assert SHUTDOWN_TIMEOUT_DEFAULT <= elapsed < SHUTDOWN_TIMEOUT_DEFAULT + MARGIN, out
