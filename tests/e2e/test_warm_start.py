"""Warm start: workers that torch elastic forks from the launcher (fork) or from multiprocessing's
forkserver (forkserver), on real processes through the Bazel binaries, keep every behaviour of the
default start: the user's main as __main__, exit codes, the root cause, stacks on a stop signal,
restarts, no orphans; and the CUDA rule holds.

The binaries of the other e2e tests run here with PET_START_METHOD, torchrun's variable; the probe
of tests/e2e/warm_probe.py reports what a forked worker finds. The CUDA rule runs on a plain script
(warm_training.py), as maybe_run_training's callers are.
"""

import os
import re
import signal
import sys
import uuid
from pathlib import Path

import pytest
from harness.bazel import BIN, ROOT, run, wait_for
from harness.launch import (
    MARGIN,
    MONITOR_INTERVAL,
    ROOT_CAUSE,
    ROOT_CAUSE_PROBE,
    assert_on_loopback,
    assert_stacks_on_stop,
    finish,
    launch,
    probe_env,
    reports,
    run_root_cause,
    start_signals_probe,
)
from harness.procfs import listening_addresses, processes_with_env

from py_distributed.launch.shutdown import SHUTDOWN_TIMEOUT_DEFAULT

METHODS = ["fork", "forkserver"]
PROBE = BIN / "tests/e2e/warm_probe"
ALLREDUCE = BIN / "tests/e2e/allreduce"
TRAINING = Path(__file__).with_name("warm_training.py")


def probe(probe_dir, run_id, method, *args, stub=PROBE, **env):
    """Runs a binary to its end with PET_START_METHOD=method (unless None) and PROBE_* settings."""
    settings = probe_env(probe_dir, run_id, **env)
    if method:
        settings["PET_START_METHOD"] = method
    return run([stub, *args], env=settings)


@pytest.mark.parametrize("method", METHODS)
def test_forked_workers_run_the_main_as_main_with_a_workers_state(probe_dir, run_id, method):
    done = probe(probe_dir, run_id, method, "--lr", "0.5")
    assert done.returncode == 0, done.stdout
    ranks = reports(probe_dir)
    assert [(r["rank"], r["sum"], r["argv"], r["name"]) for r in ranks] == [
        (rank, 2, ["--lr", "0.5"], "__main__") for rank in (0, 1)
    ]
    launcher = ranks[0]["launcher_pid"]
    for r in ranks:
        assert r["forked"] and r["worker_marker"], r
        # fork: the launcher's children; forkserver: the children of one server, the launcher's.
        if method == "fork":
            assert r["ppid"] == launcher, r
        else:
            assert r["ppid"] != launcher and r["ppid"] == ranks[0]["ppid"], r
        # The CUDA rule: the process each was forked from had not initialised CUDA.
        assert not r["cuda_initialised"] and not r["libcuda"], r
        # What the launcher set up for its launch is not the worker's.
        assert r["logging_disabled"] == 0 and r["sigterm_default"] and r["sigint_default"], r
        # The launcher's environment when the launch ran the workers, not when the forkserver
        # started, before the launcher imported torch.
        assert r["workers_dir"] and r["pet_start_method"] is None, r
        # What it inherited is kept out of its garbage collections, which would copy it.
        assert r["frozen_objects"] > 10_000, r
    # The workers' own exit handlers ran.
    assert sorted(p.name for p in probe_dir.glob("exit*")) == ["exit0", "exit1"]


def test_what_the_forkservers_imports_made_outlives_each_workers_exit(probe_dir, run_id):
    done = probe(probe_dir, run_id, "forkserver", scratch=1)
    assert done.returncode == 0, done.stdout
    ranks = reports(probe_dir)
    # The same directories, made by the server's import of the main's declared import, for both.
    assert ranks[0]["scratch"] == ranks[1]["scratch"], ranks
    # Their finalizer and exit handler are the server's: rank 0's exit leaves them to rank 1, and
    # the server runs them when it stops.
    assert ranks[1]["scratch_kept"] == [True, True], ranks
    assert not [d for d in ranks[1]["scratch"] if Path(d).exists()]


@pytest.mark.parametrize("method", METHODS)
def test_each_process_removes_what_the_programs_top_level_made_in_it(training, method):
    # The program's top level runs in the launcher and again in each forkserver worker, as the
    # main module that multiprocessing imports there: each made a temporary directory of its own.
    done, ranks = training(method)
    assert done.returncode == 0, done.stdout
    made = {r["scratch"] for r in ranks}
    assert len(made) == (2 if method == "forkserver" else 1), ranks
    assert not list(Path(next(iter(made))).parent.glob("warm_training-*")), ranks


def test_a_bad_input_found_after_the_forkserver_started_leaves_nothing_running(probe_dir, run_id):
    # The launcher starts the forkserver before it imports torch, then checks torchrun's flags.
    settings = {"PET_START_METHOD": "forkserver", "PET_LOG_DIR": "/proc/py_distributed"}
    done = run([PROBE], env={**probe_env(probe_dir, run_id), **settings})
    assert done.returncode == 2, done.stdout
    assert done.stdout.splitlines() == [
        "//tests/e2e:warm_probe: error: log_dir='/proc/py_distributed' (from --log-dir or"
        " PET_LOG_DIR): cannot write there; choose a writable directory"
    ]
    # The run_id fixture then checks that no process of the run is left: the forkserver has the
    # launcher's environment, PET_RDZV_ID included.


def test_start_method_in_build_and_pet_start_method_over_it(probe_dir, run_id):
    stub = BIN / "tests/e2e/warm_probe_forkserver"
    done = probe(probe_dir, run_id, None, stub=stub)
    assert done.returncode == 0, done.stdout
    assert [r["forked"] for r in reports(probe_dir)] == [True, True]
    assert all(r["ppid"] != r["launcher_pid"] for r in reports(probe_dir))
    for report in probe_dir.glob("rank*.json"):
        report.unlink()
    done = probe(probe_dir, run_id, "spawn", stub=stub)
    assert done.returncode == 0, done.stdout
    assert [r["forked"] for r in reports(probe_dir)] == [False, False]


@pytest.mark.parametrize("method", METHODS)
def test_a_main_that_ends_with_os_exit_0_succeeds(probe_dir, run_id, method):
    # torch elastic learns of a forked worker's success only from its function's return.
    done = probe(probe_dir, run_id, method, exit="os_exit0")
    assert done.returncode == 0, done.stdout
    assert [r["rank"] for r in reports(probe_dir)] == [0, 1]


# Through the root-cause probe on gloo (tests/e2e/root_cause.py): 3 ranks, one fails while the
# others wait for it in a collective, and fail a few milliseconds later with an echo. A rank's own
# exit code is the deaf-rank test's.
ROOT_CAUSE_SCENARIOS = [
    pytest.param("2:raise", 2, 1, id="exception"),
    pytest.param("2:sigkill", 2, 137, id="sigkill"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("failures", "rank", "code"), ROOT_CAUSE_SCENARIOS)
def test_first_failed_rank_is_the_root_cause_and_its_code_the_jobs(
    probe_dir, run_id, method, failures, rank, code
):
    env = {"PROBE_FAILURES": failures, "PET_START_METHOD": method}
    # A longer look than torch's 0.1 s: torch elastic then finds the echoes ended too, and would
    # name the lowest rank (harness.launch.MONITOR_INTERVAL).
    env["PET_MONITOR_INTERVAL"] = MONITOR_INTERVAL
    done = run([ROOT_CAUSE_PROBE], env={**probe_env(probe_dir, run_id), **env})
    found = ROOT_CAUSE.search(done.stdout)
    assert (done.returncode, int(found[1]) if found else None) == (code, rank), done.stdout
    # The echoes follow, each once: those that torch elastic stopped before they had failed on
    # their own are left out, as torch's own report of spawned workers leaves them out.
    others = re.findall(r": also failed .*?: rank (\d+) ", done.stdout)
    assert len(others) == len(set(others)) and str(rank) not in others, done.stdout
    if failures.endswith("raise"):
        assert done.stdout.count(f"RuntimeError: probe failure on rank {rank}") == 1, done.stdout


@pytest.mark.parametrize("method", METHODS)
def test_a_rank_deaf_to_sigterm_is_killed_within_the_shutdown_timeout(tmp_path, run_id, method):
    env = {"PROBE_FAILURES": "1:exit7", "PROBE_DEAF_RANK": "2", "PET_START_METHOD": method}
    outcome = run_root_cause(tmp_path / "probe", run_id, env)
    assert (outcome.code, outcome.root_rank) == (7, 1), outcome.out
    assert outcome.failed_to_exit is not None
    # torch elastic's MultiprocessContext would wait 30 s before its SIGKILL.
    assert SHUTDOWN_TIMEOUT_DEFAULT <= outcome.failed_to_exit < SHUTDOWN_TIMEOUT_DEFAULT + MARGIN


@pytest.mark.parametrize("method", METHODS)
def test_a_transient_failure_recovers_with_max_restarts(probe_dir, run_id, method):
    restarts = {"PET_MAX_RESTARTS": "1", "PET_START_METHOD": method}
    done = run([ALLREDUCE], env={**probe_env(probe_dir, run_id, failures="1:exit3"), **restarts})
    assert done.returncode == 0, done.stdout
    assert [r["sum"] for r in reports(probe_dir)] == [2, 2]


@pytest.mark.parametrize("method", METHODS)
def test_sigterm_shows_each_ranks_stacks_under_its_rank_then_stops(probe_dir, run_id, method):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PET_START_METHOD", method)
        proc = start_signals_probe(probe_dir, run_id)
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc, timeout=60)
    assert code == 128 + signal.SIGTERM, out
    assert_stacks_on_stop(out, signal.SIGTERM)


@pytest.mark.parametrize("method", METHODS)
def test_sigkill_of_launcher_leaves_no_worker(probe_dir, run_id, method):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PET_START_METHOD", method)
        proc = start_signals_probe(probe_dir, run_id)
    workers = [int(p.read_text()) for p in probe_dir.glob("rank*.ready")]
    assert all(pid in processes_with_env("PET_RDZV_ID", run_id) for pid in workers)
    proc.kill()
    finish(proc)
    # The run_id fixture then checks the process table: the kernel killed the workers, and the
    # forkserver with them.


@pytest.mark.parametrize("method", METHODS)
def test_a_single_node_job_listens_on_loopback_only(probe_dir, run_id, method, monkeypatch):
    monkeypatch.setenv("PET_START_METHOD", method)
    proc = launch(ALLREDUCE, probe_dir, run_id, sleep=2)
    try:
        assert wait_for(lambda: len(reports(probe_dir)) == 2, timeout=60)
        workers = [int(str(r["pid"])) for r in reports(probe_dir)]
        listening = listening_addresses([proc.pid, *workers])
        launcher = listening_addresses([proc.pid])
    finally:
        _, out = finish(proc)
    assert_on_loopback(launcher, listening, out)


@pytest.fixture
def training(tmp_path):
    """Runs warm_training.py, outside Bazel; returns (completed process, rank reports)."""

    def start(method, **env):
        probe_dir = tmp_path / uuid.uuid4().hex
        probe_dir.mkdir()
        settings = {
            **probe_env(probe_dir, **env),
            "PET_START_METHOD": method,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "runtime"), str(ROOT / "tests")]),
        }
        done = run([sys.executable, TRAINING], env=settings)
        return done, reports(probe_dir)

    return start


def test_fork_after_the_program_initialised_cuda_falls_back_to_spawn(training):
    done, ranks = training("fork", touch_cuda=1)
    assert done.returncode == 0, done.stdout
    notice = "warm_training.py: start_method=fork: CUDA is initialised"
    assert [line for line in done.stdout.splitlines() if line.startswith(notice)], done.stdout
    assert done.stdout.rstrip().count("starting workers with spawn") == 1, done.stdout
    assert [(r["forked"], r["tag"]) for r in ranks] == [(False, "kwargs arrive")] * 2


def test_forkserver_after_the_program_initialised_cuda_forks_from_a_server_without_it(training):
    done, ranks = training("forkserver", touch_cuda=1)
    assert done.returncode == 0, done.stdout
    assert "starting workers with spawn" not in done.stdout
    assert [(r["forked"], r["cuda_initialised"]) for r in ranks] == [(True, False)] * 2


def test_forkserver_whose_imports_initialise_cuda_fails_its_workers_with_the_reason(training):
    done, ranks = training("forkserver", import_touches_cuda=1)
    assert done.returncode == 1, done.stdout
    assert "in the process this worker was forked from, so it cannot use CUDA" in done.stdout
    assert not ranks


@pytest.mark.parametrize("method", METHODS)
def test_train_fn_runs_in_forked_workers_with_the_launchers_kwargs(training, method):
    done, ranks = training(method)
    assert done.returncode == 0, done.stdout
    assert [(r["forked"], r["tag"], r["cuda_initialised"]) for r in ranks] == [
        (True, "kwargs arrive", False)
    ] * 2
