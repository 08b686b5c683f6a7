"""`bazel run` and bazel-bin binaries: workers re-enter the binary and run the user's script."""

import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from harness.bazel import BIN, ROOT, bazel, run
from harness.launch import reports

# Arguments that a shell, a `--key=value` parser or an encoding step would mangle.
AWKWARD_ARGS = [
    "--",  # argparse (torchrun's) would eat a leading one
    "plain",
    "--",
    "with space",
    "quote\"s 'both'",
    "--key=a=b",
    "ünïcødé ✓",
    "",
    "$HOME",
    "-",
]

STUB = "tests/e2e/allreduce"


def stub_execs(execs, stub: Path) -> list:
    return [e for e in execs if os.path.realpath(e.path) == os.path.realpath(stub)]


def test_bazel_run_trains_the_example_to_90_percent(built, tmp_path):
    done = bazel("run", "//train:model", "--", f"--checkpoint={tmp_path}/model.pt")
    assert done.returncode == 0, done.stdout
    assert re.search(r"digits: 2 workers, 1 node\(s\), backend gloo", done.stdout), done.stdout
    accuracies = [float(a) for a in re.findall(r"held-out accuracy ([\d.]+)%", done.stdout)]
    assert len(accuracies) == 10 and accuracies[-1] >= 90.0, done.stdout
    checkpoint = torch.load(tmp_path / "model.pt")
    assert checkpoint["accuracy"] >= 0.9 and checkpoint["epoch"] == 10
    # Asked for more epochs than its checkpoint has, a job trains on from it (as a restarted or
    # requeued one does); asked for no more, it would start afresh.
    done = bazel("run", "//train:model", "--", f"--checkpoint={tmp_path}/model.pt", "--epochs=11")
    assert done.returncode == 0, done.stdout
    assert f"resumed from {tmp_path}/model.pt after epoch 10" in done.stdout, done.stdout
    resumed = [
        float(a) for a in re.findall(r"epoch 11/11: .* held-out accuracy ([\d.]+)%", done.stdout)
    ]
    assert len(re.findall(r"held-out accuracy", done.stdout)) == 1 and resumed[0] >= 90.0


def test_relative_checkpoint_lands_where_bazel_run_was_called(built, tmp_path):
    # `bazel run` starts the binary inside its runfiles; BUILD_WORKING_DIRECTORY is the user's cwd.
    done = run(
        ["bazel", "run", "//train:model", "--", "--epochs=1", "--checkpoint=out/m.pt"],
        cwd=ROOT / "train",
    )
    try:
        assert done.returncode == 0, done.stdout
        assert (ROOT / "train" / "out" / "m.pt").is_file()
    finally:
        shutil.rmtree(ROOT / "train" / "out", ignore_errors=True)


def test_every_worker_of_bazel_run_is_started_through_the_stub(built, strace, probe_dir):
    done, execs = strace(
        ["bazel", "run", f"//{os.path.dirname(STUB)}:allreduce"], env={"PROBE_DIR": str(probe_dir)}
    )
    assert done.returncode == 0, done.stdout
    # The launcher, then one exec of the stub per worker; each stub then execs the interpreter.
    assert len(stub_execs(execs, BIN / STUB)) == 3, execs
    assert [r["world_size"] for r in reports(probe_dir)] == [2, 2]


def test_binary_runs_from_bazel_bin_out_of_another_cwd(built, strace, probe_dir, tmp_path):
    # No runfiles variables at all: the stub and the launcher find the tree themselves.
    env = {"PROBE_DIR": str(probe_dir), "RUNFILES_DIR": "", "RUNFILES_MANIFEST_FILE": ""}
    done, execs = strace([BIN / STUB, "x"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout
    assert len(stub_execs(execs, BIN / STUB)) == 3, execs
    assert [(r["rank"], r["sum"], r["argv"]) for r in reports(probe_dir)] == [
        (0, 2, ["x"]),
        (1, 2, ["x"]),
    ]


def test_arguments_reach_every_worker_byte_for_byte(built, probe_dir):
    done = bazel(
        "run", "//tests/e2e:allreduce", "--", *AWKWARD_ARGS, env={"PROBE_DIR": str(probe_dir)}
    )
    assert done.returncode == 0, done.stdout
    assert [r["argv"] for r in reports(probe_dir)] == [AWKWARD_ARGS, AWKWARD_ARGS]


def test_workers_run_the_script_from_the_runfiles_tree_as_main(built, probe_dir, tmp_path):
    done = run([BIN / STUB], cwd=tmp_path, env={"PROBE_DIR": str(probe_dir)})
    assert done.returncode == 0, done.stdout
    for report in reports(probe_dir):
        assert str(report["file"]).endswith(
            "allreduce.runfiles/rules_py_distributed/tests/e2e/allreduce.py"
        )


def test_pythonpath_entry_runs_workers_as_bare_python(built, strace, probe_dir, tmp_path):
    stub = BIN / "tests/e2e/allreduce_pythonpath"
    done, execs = strace([stub, "p"], cwd=tmp_path, env={"PROBE_DIR": str(probe_dir)})
    assert done.returncode == 0, done.stdout
    assert len(stub_execs(execs, stub)) == 1  # the launcher only
    workers = [
        e
        for e in execs
        if '"-u"' in e.argv and "_allreduce_pythonpath_py_distributed_main.py" in e.argv
    ]
    assert len(workers) == 2, execs
    for report in reports(probe_dir):
        assert "allreduce_pythonpath.runfiles" in str(report["pythonpath"])
        assert report["argv"] == ["p"]


def test_scheduler_world_size_and_rank_do_not_make_the_launcher_a_worker(built, probe_dir):
    # Kubeflow's PyTorchJob puts node-level WORLD_SIZE/RANK into the launcher's environment.
    env = {"PROBE_DIR": str(probe_dir), "WORLD_SIZE": "8", "RANK": "3", "LOCAL_RANK": "0"}
    done = run([BIN / STUB], env=env)
    assert done.returncode == 0, done.stdout
    assert [(r["rank"], r["world_size"]) for r in reports(probe_dir)] == [(0, 2), (1, 2)]


def test_pet_variables_override_build_values(built, probe_dir):
    done = run([BIN / STUB], env={"PROBE_DIR": str(probe_dir), "PET_NPROC_PER_NODE": "3"})
    assert done.returncode == 0, done.stdout
    assert [r["world_size"] for r in reports(probe_dir)] == [3, 3, 3]


def test_bazel_test_runs_ranks_in_the_network_blocked_sandbox(built):
    done = bazel("test", "//tests/e2e:sandbox_test")
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("define", "world", "through_pythonpath"), [([], 2, False), (["--define=size=big"], 3, True)]
)
def test_every_setting_takes_a_select(built, probe_dir, define, world, through_pythonpath):
    target = "//tests/e2e:allreduce_selected"
    env = {"PROBE_DIR": str(probe_dir), "PY_DISTRIBUTED_VERBOSE": "1"}
    done = bazel("run", *define, target, env=env)
    assert done.returncode == 0, done.stdout
    found = reports(probe_dir)
    assert [r["world_size"] for r in found] == [world] * world
    launch = next(line for line in done.stdout.splitlines() if ": torchrun --" in line)
    assert ("--no-python" not in launch) == through_pythonpath, launch  # worker_entry
    for flag in ["--max-restarts=1", "--rdzv-conf=join_timeout=30", "--monitor-interval=0.2"]:
        assert (flag in launch) == through_pythonpath, launch


def worker_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[rank")]


def test_a_launch_reads_as_one_banner_then_rank_labelled_worker_lines(built, probe_dir):
    done = run([BIN / STUB], env={"PROBE_DIR": str(probe_dir)})
    assert done.returncode == 0, done.stdout
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    banner = f"//{STUB[: STUB.rfind('/')]}:allreduce: 2 workers x 1 node, CPU (gloo),"
    assert done.stdout.splitlines()[0].startswith(banner), done.stdout
    assert f"OMP_NUM_THREADS={threads} (" in done.stdout.splitlines()[0]
    assert sorted(worker_lines(done.stdout)) == [
        "[rank0]: allreduce: rank 0 of 2: sum 2",
        "[rank1]: allreduce: rank 1 of 2: sum 2",
    ], done.stdout
    assert "torchrun --" not in done.stdout and "OMP_NUM_THREADS environment" not in done.stdout
    assert [r["omp_num_threads"] for r in reports(probe_dir)] == [str(threads)] * 2


def test_the_users_choices_of_threads_ranks_shown_and_verbosity_are_kept(built, probe_dir):
    env = {
        "PROBE_DIR": str(probe_dir),
        "OMP_NUM_THREADS": "3",
        "PET_LOCAL_RANKS_FILTER": "1",
        "PY_DISTRIBUTED_VERBOSE": "1",
    }
    done = run([BIN / STUB], env=env)
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[0].endswith(", OMP_NUM_THREADS=3"), done.stdout
    assert worker_lines(done.stdout) == ["[rank1]: allreduce: rank 1 of 2: sum 2"], done.stdout
    assert "allreduce: torchrun --nproc-per-node=2 " in done.stdout
    assert [r["omp_num_threads"] for r in reports(probe_dir)] == ["3", "3"]
