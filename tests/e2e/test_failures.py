"""Failures, signals, concurrency, network exposure and bad input, on real processes."""

import signal
import time

import pytest
from harness.bazel import BIN, run, wait_for
from harness.launch import MARGIN, assert_on_loopback, finish, launch, reports
from harness.procfs import listening_addresses, processes_with_env

from py_distributed.launch.shutdown import SHUTDOWN_TIMEOUT_DEFAULT
from py_distributed.protocol import RUN_ID_ENV

STUB = BIN / "tests/e2e/allreduce"
TARGET = "//tests/e2e:allreduce"


def test_failing_rank_sets_exit_code_and_its_traceback_is_shown_once_with_its_rank(
    probe_dir, run_id
):
    code, out = finish(launch(STUB, probe_dir, run_id, failures="1:raise"))
    assert code == 1, out
    assert out.count("RuntimeError: probe failure on rank 1") == 1, out
    assert "root cause: rank 1 exited with code 1 (local rank 1, " in out


def test_failing_rank_exit_code_is_the_jobs(probe_dir, run_id):
    code, out = finish(launch(STUB, probe_dir, run_id, failures="1:exit7"))
    assert code == 7, out


def test_transient_failure_recovers_with_max_restarts(probe_dir, run_id, monkeypatch):
    monkeypatch.setenv("PET_MAX_RESTARTS", "1")
    code, out = finish(launch(STUB, probe_dir, run_id, failures="1:exit3"))
    assert code == 0, out
    assert [r["sum"] for r in reports(probe_dir)] == [2, 2]


def test_rank_stuck_and_deaf_to_sigterm_is_killed_in_bounded_time(probe_dir, run_id):
    # Rank 1 ignores SIGTERM and never returns, as a rank stuck in C++ would; rank 0 fails as
    # soon as both have reported.
    proc = launch(STUB, probe_dir, run_id, deaf_rank=1, failures="0:exit5")
    reported = wait_for(lambda: len(reports(probe_dir)) == 2, timeout=120, step=0.05)
    failed = time.monotonic()
    code, out = finish(proc)
    assert reported and code == 5, out
    # Rank 1 outlived SIGTERM and was killed shutdown_timeout (default 5 s) after rank 0 failed,
    # not after torch elastic's fixed 30 s; 10 s more for a loaded 2-core machine. The run_id
    # fixture then checks that no process of the run is left.
    assert time.monotonic() - failed < SHUTDOWN_TIMEOUT_DEFAULT + MARGIN, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_to_launcher_stops_every_worker(probe_dir, run_id, sig):
    proc = launch(STUB, probe_dir, run_id, sleep=120)
    assert wait_for(lambda: len(reports(probe_dir)) == 2, timeout=60)
    proc.send_signal(sig)
    code, out = finish(proc, timeout=60)
    assert code == 128 + sig, out
    assert f"stopped by {sig.name}" in out


def test_sigkill_of_launcher_leaves_no_worker(probe_dir, run_id):
    proc = launch(STUB, probe_dir, run_id, sleep=120)
    assert wait_for(lambda: len(reports(probe_dir)) == 2, timeout=60)
    workers = processes_with_env(RUN_ID_ENV, run_id)
    assert len(workers) == 2
    proc.kill()
    finish(proc)
    # The run_id fixture then checks the process table: the kernel killed the orphans.


def test_eight_concurrent_launches_all_succeed(tmp_path, run_ids):
    ids = [run_ids() for _ in range(8)]
    runs = []
    for i, run_id in enumerate(ids):
        probe = tmp_path / f"probe{i}"
        probe.mkdir()
        runs.append((probe, launch(STUB, probe, run_id)))
    results = [(probe, *finish(proc, timeout=300)) for probe, proc in runs]  # all, even on failure
    for probe, code, out in results:
        assert code == 0, out
        assert [r["sum"] for r in reports(probe)] == [2, 2]
    assert not any(processes_with_env(RUN_ID_ENV, run_id) for run_id in ids)


def test_single_node_job_listens_on_loopback_only(probe_dir, run_id):
    proc = launch(STUB, probe_dir, run_id, sleep=5)
    try:
        assert wait_for(lambda: len(reports(probe_dir)) == 2, timeout=60)
        workers = processes_with_env(RUN_ID_ENV, run_id)
        launcher = listening_addresses([proc.pid])
        listening = listening_addresses([proc.pid, *workers])
    finally:
        _, out = finish(proc)
    assert len(workers) == 2
    assert_on_loopback(launcher, listening, out)


def test_stray_pet_variables_for_owned_flags_do_not_make_workers_launch(probe_dir, run_id):
    # PET_STANDALONE would give workers a run id of their own; each would then launch again.
    env = {"PET_STANDALONE": "1", "PET_NO_PYTHON": "", "PET_MODULE": "1", "PET_RUN_PATH": "1"}
    done = run([STUB], env={"PROBE_DIR": str(probe_dir), "PET_RDZV_ID": run_id, **env})
    assert done.returncode == 0, done.stdout
    assert [(r["rank"], r["world_size"]) for r in reports(probe_dir)] == [(0, 2), (1, 2)]


def test_user_strings_never_reach_a_shell(probe_dir, tmp_path, run_id):
    marker = tmp_path / "shell-ran"
    args = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", f"| touch {marker}"]
    env = {"PROBE_DIR": str(probe_dir), "PET_RDZV_ID": run_id, "PET_LOG_DIR": f"{tmp_path}/$(x)"}
    done = run([STUB, *args], env=env)
    assert done.returncode == 0, done.stdout
    assert [r["argv"] for r in reports(probe_dir)] == [args, args]
    assert not marker.exists()


# One case per source of bad input, each taking a different path to the one error line; the
# unit tests hold the grammar of every knob. Each message part is one the runtime keeps: the knob,
# the value as given, and where it came from.
BAD_INPUTS = [
    pytest.param(  # a knob's grammar, from PET_*
        {"PET_NPROC_PER_NODE": "0"},
        ["nproc_per_node='0'", "(from PET_NPROC_PER_NODE)"],
        id="knob-grammar",
    ),
    pytest.param(  # a decision across knobs: more than one node needs an endpoint
        {"PET_NNODES": "2"},
        ["rdzv_endpoint=''", "nnodes"],
        id="cross-knob",
    ),
    pytest.param(  # torchrun's own argument parser
        {"PET_MONITOR_INTERVAL": "abc"},
        ["--monitor-interval", "'abc'"],
        id="torchrun-parser",
    ),
    pytest.param(  # rdzv_conf, read by the rendezvous settings
        {"PET_RDZV_CONF": "join_timeout=0"},
        ["rdzv_conf", "join_timeout=0"],
        id="rdzv-conf",
    ),
    pytest.param(  # the file system: a log directory that cannot be written
        {"PET_LOG_DIR": "/proc/forbidden"},
        ["log_dir='/proc/forbidden'", "PET_LOG_DIR"],
        id="log-dir",
    ),
    pytest.param(  # the machine: nproc_per_node=gpu where no CUDA device is visible
        {"PET_NPROC_PER_NODE": "gpu", "CUDA_VISIBLE_DEVICES": ""},
        ["nproc_per_node='gpu'", "CUDA"],
        id="gpu-without-cuda",
    ),
    pytest.param(  # the cluster description
        {"TF_CONFIG": "{"},
        ["TF_CONFIG: not JSON"],
        id="cluster-description",
    ),
]


@pytest.mark.parametrize(("bad", "parts"), BAD_INPUTS)
def test_bad_run_time_input_is_one_line_and_exit_2_before_any_worker(probe_dir, built, bad, parts):
    done = run([STUB], env={"PROBE_DIR": str(probe_dir), **bad})
    assert done.returncode == 2, done.stdout
    errors = [line for line in done.stdout.splitlines() if line.startswith(f"{TARGET}: error: ")]
    assert len(errors) == 1 and all(part in errors[0] for part in parts), done.stdout
    assert errors[0] == done.stdout.strip().splitlines()[-1]
    assert "torchrun --nproc" not in done.stdout  # the launch line: nothing was started
    assert reports(probe_dir) == []
