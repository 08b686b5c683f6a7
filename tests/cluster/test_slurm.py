"""`<name>.slurm` against a real SLURM 22.05 of 3 nodes in network namespaces (slurm_cluster.py):
the job trains, fails with its failing rank's code, is cancelled by Ctrl-C, and bad options queue
nothing. The cluster comes up once for the module."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cluster import slurm_cluster
from harness.bazel import BIN, bazel, wait_for

PROBE = BIN / "tests/cluster/probe.slurm"  # nproc_per_node = 2; tests/cluster/probe.py
MODEL = BIN / "train/model.slurm"  # the example job, nproc_per_node = 2
# The simulated nodes share this machine's disk, which the mount table shows as local.
SHARED = "--shared-fs=/"


@pytest.fixture(scope="module")
def slurm():
    with slurm_cluster.cluster(3) as up:
        yield up


@pytest.fixture(scope="module", autouse=True)
def submitters():
    done = bazel("build", "//tests/cluster:all", "//train:model.slurm")
    assert done.returncode == 0, done.stdout


def submit(slurm, submitter, *argv, cwd, env=None):
    """Runs the submitter to its end (a killed one leaves its job to the cluster's tear-down)."""
    return subprocess.run(
        [str(submitter), *argv],
        cwd=cwd,
        env={**os.environ, **slurm.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def popen(slurm, submitter, *argv, cwd):
    return subprocess.Popen(
        [str(submitter), *argv],
        cwd=cwd,
        env={**os.environ, **slurm.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def job_state(slurm, job_id):
    return re.search(r"JobState=(\S+)", slurm.run("scontrol", "-o", "show", "job", job_id))[1]


def known_jobs(slurm):
    """Every job slurmctld knows, finished ones too (MinJobAge=300)."""
    return re.findall(r"JobId=(\d+)", slurm.run("scontrol", "-o", "show", "job"))


def assert_nothing_left(slurm):
    """No job in the queue, none of its processes on any node, and SLURM's step daemons gone
    within moments (each ends after reporting its step's end)."""
    assert slurm.jobs() == []
    left = slurm.job_processes()
    assert [p for ps in left.values() for p in ps if " slurmstepd: " not in f" {p}"] == [], left
    assert wait_for(lambda: not any(slurm.job_processes().values()), timeout=15), left


def test_model_trains_on_two_nodes_of_two_ranks(slurm, tmp_path):
    done = submit(slurm, MODEL, "--nodes=2", SHARED, "--", "--epochs=1", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^\[\S+ rank0\]: digits: 4 workers, 2 node\(s\)", done.stdout, re.M)
    assert re.search(r"^\[\S+ rank0\]: epoch 1/1: .* held-out accuracy \d", done.stdout, re.M)
    # The job ran where the submitter was started, as `bazel run` would.
    assert (tmp_path / "train_output/model.pt").is_file()
    assert re.search(r"job \d+ COMPLETED after .*: exit status 0$", done.stderr, re.M)
    # The batch script gave the nodes a secret of the job's (docs/security.md), and removed it.
    assert "no job secret" not in done.stdout + done.stderr
    assert list(tmp_path.glob("slurm-*/*")) and not list(tmp_path.glob("slurm-*/*.secret"))
    assert_nothing_left(slurm)


def test_a_failing_rank_gives_the_job_its_exit_code(slurm, tmp_path):
    # Rank 3 runs on node rank 1; the ranks of node rank 0 wait for it in an all-reduce, which
    # fails as it exits: their launcher names rank 3 too, and exits with its code.
    probe = ["--sleep=120", "--fail-rank=3", "--code=7", "--collective"]
    done = submit(slurm, PROBE, "--nodes=2", SHARED, "--", *probe, cwd=tmp_path)
    assert done.returncode == 7, done.stdout + done.stderr
    assert re.search(r": root cause: rank 3 exited with code 7\b", done.stdout), done.stdout
    assert re.search(r"probe: node rank [01] ended first, with exit code 7$", done.stdout, re.M)
    (job_id,) = re.findall(r"job (\d+) FAILED", done.stderr)
    assert "ExitCode=7:0" in slurm.run("scontrol", "-o", "show", "job", job_id)
    assert_nothing_left(slurm)


def test_sigint_cancels_the_job_and_leaves_no_process_on_any_node(slurm, tmp_path):
    proc = popen(slurm, PROBE, "--nodes=2", SHARED, "--", "--sleep=300", cwd=tmp_path)
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    try:
        started = []
        for line in proc.stdout:
            started += re.findall(r"probe: rank (\d) of 4 started", line)
            if len(started) == 4:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    assert sorted(started) == ["0", "1", "2", "3"], out + err
    assert proc.returncode == 128 + signal.SIGINT, out + err
    (job_id,) = re.findall(r"cancelling job (\d+)", err)
    # The submitter returned once SLURM had ended every process of the job.
    assert job_state(slurm, job_id) == "CANCELLED"
    assert_nothing_left(slurm)


def test_no_wait_prints_the_job_id_and_each_node_rank_writes_its_own_file(slurm, tmp_path):
    done = submit(slurm, PROBE, "--nodes=2", SHARED, "--no-wait", "--", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.strip()
    assert job_id in known_jobs(slurm)
    assert wait_for(lambda: job_state(slurm, job_id) == "COMPLETED", timeout=120)
    logs = tmp_path / "slurm-probe"
    for rank, node in enumerate(("node1", "node2")):
        lines = (logs / f"{job_id}.node{rank}.out").read_text()
        assert len(re.findall(rf"probe: rank \d of 4 started on {node}", lines)) == 2, lines
    assert_nothing_left(slurm)


def test_sigusr1_of_the_time_limit_reaches_every_worker_and_the_job_runs_on(slurm, tmp_path):
    # `--signal=USR1@T` and `scancel --signal=USR1` reach the job's steps the same way: every
    # process of them, the bash around each launcher, the launcher and its workers.
    argv = ["--nodes=2", SHARED, "--no-wait", "--", "--sleep=120"]
    done = submit(slurm, PROBE, *argv, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.strip()
    files = [tmp_path / f"slurm-probe/{job_id}.node{rank}.out" for rank in (0, 1)]

    def output():
        return "".join(f.read_text() for f in files if f.exists())

    def signalled():
        return set(re.findall(r"probe: rank (\d) got SIGUSR1", output()))

    try:
        assert wait_for(lambda: output().count(" started on ") == 4, timeout=120), output()
        slurm.run("scancel", "--signal=USR1", job_id)
        assert wait_for(lambda: signalled() == {"0", "1", "2", "3"}, timeout=30), output()
        time.sleep(1)  # for any process the signal would end
        assert job_state(slurm, job_id) == "RUNNING", output()
    finally:
        slurm.run("scancel", job_id)
        assert wait_for(lambda: job_state(slurm, job_id) == "CANCELLED", timeout=60)
    assert_nothing_left(slurm)


def test_dry_run_prints_the_batch_script_and_queues_nothing(slurm, tmp_path):
    before = known_jobs(slurm)
    argv = ["--nodes=3", "--time=10", "--partition=debug", SHARED, "--dry-run", "--", "a b"]
    done = submit(slurm, PROBE, *argv, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for directive in (
        "--job-name=//tests/cluster:probe",
        "--nodes=3",
        "--ntasks-per-node=1",
        "--time=10",
        "--partition=debug",
        "--signal=USR1@120",
        f"--chdir={tmp_path}",
    ):
        assert f"#SBATCH {directive}\n" in done.stdout
    assert "srun --ntasks-per-node=1 --kill-on-bad-exit=1 " in done.stdout
    assert re.search(r"/probe\.slurm\.runfiles/\w+/tests/cluster/probe 'a b'\n", done.stdout)
    assert known_jobs(slurm) == before


SLURM_COMMANDS = {"sbatch", "scancel", "scontrol", "sinfo", "squeue", "srun", "salloc"}
WITHOUT_SLURM = "PATH less SLURM's commands"  # the fixture below, in place of this


@pytest.fixture
def path_without_slurm(tmp_path):
    """PATH less SLURM's commands: a directory that holds one is replaced by a directory of links
    to its other commands (the virtualenv's stays as it is, for its interpreter to find it)."""
    directories = []
    for index, entry in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not any((Path(entry) / command).exists() for command in SLURM_COMMANDS):
            directories.append(entry)
            continue
        links = tmp_path / f"bin{index}"
        links.mkdir()
        for command in Path(entry).iterdir():
            if command.name not in SLURM_COMMANDS:
                (links / command.name).symlink_to(command)
        directories.append(str(links))
    return os.pathsep.join(directories)


BAD = [
    (["--nodes=0", SHARED], {}, "--nodes='0': use an int >= 1"),
    (["--nodes=4", SHARED], {}, "--nodes=4: partition debug has 3 nodes; ask for at most 3"),
    (
        ["--partition=gpu", SHARED],
        {},
        "--partition='gpu': no partition gpu; use one of debug, short",
    ),
    (["--partition=short", "--nodes=3", SHARED], {}, "partition short allows at most 2 nodes per"),
    (
        ["--partition=short", "--time=1:00:00", SHARED],
        {},
        "partition short allows at most 00:05:00",
    ),
    (["--time=soon", SHARED], {}, "--time='soon': use MINUTES, MINUTES:SECONDS"),
    (["--nodes=2", "--epochs=1", SHARED], {}, "put the binary's arguments after `--`"),
    (["--nodes=2"], {}, "not a network file system"),
    (["--nodes=2", SHARED], {"PET_NNODES": "3"}, "--nodes=2: nnodes='3' (from PET_NNODES): SLURM"),
    (["--nodes=2", SHARED], {"PET_NPROC_PER_NODE": "abc"}, "nproc_per_node='abc' (from PET_NPROC"),
    (["--nodes=2", SHARED], {"PATH": WITHOUT_SLURM}, "sbatch is not on PATH"),
]


@pytest.mark.parametrize(("argv", "env", "message"), BAD, ids=[m for _, _, m in BAD])
def test_a_bad_option_is_one_line_and_queues_nothing(
    slurm, tmp_path, path_without_slurm, argv, env, message
):
    before = known_jobs(slurm)
    env = {k: path_without_slurm if v == WITHOUT_SLURM else v for k, v in env.items()}
    done = submit(slurm, PROBE, *argv, "--", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("//tests/cluster:probe.slurm: error: "), done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert known_jobs(slurm) == before
    assert not (tmp_path / "slurm-probe").exists()
