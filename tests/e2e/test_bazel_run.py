"""`bazel run` and bazel-bin binaries: workers re-enter the binary and run the user's script."""

import os
import re
import shutil
from pathlib import Path

import torch
from bazel_harness import BIN, ROOT, bazel, reports, run

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
    assert checkpoint["accuracy"] >= 0.9


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


def test_relocated_runfiles_tree_still_starts_workers(built, probe_dir, tmp_path):
    # As on a remote-execution worker: a copy of the tree elsewhere, no _manifest, another cwd.
    relocated = tmp_path / "elsewhere" / "allreduce.runfiles"
    shutil.copytree(BIN / (STUB + ".runfiles"), relocated, symlinks=False)
    stub = relocated / "rules_py_distributed" / STUB
    env = {"PROBE_DIR": str(probe_dir), "RUNFILES_DIR": "", "RUNFILES_MANIFEST_FILE": ""}
    done = run([stub, "moved"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout
    assert [r["argv"] for r in reports(probe_dir)] == [["moved"], ["moved"]]
    assert all(str(r["file"]).startswith(str(relocated)) for r in reports(probe_dir))


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


def test_binary_copied_away_from_its_runfiles_is_refused(built, tmp_path):
    lone = tmp_path / "allreduce"
    shutil.copy(BIN / STUB, lone)
    done = run([lone], cwd=tmp_path, env={"RUNFILES_DIR": "", "RUNFILES_MANIFEST_FILE": ""})
    assert done.returncode != 0
    assert "Cannot find .runfiles directory" in done.stdout


def test_the_script_is_an_unmodified_torchrun_script(probe_dir):
    # The same file under plain torchrun, with no Bazel and no py_distributed around it.
    script = ROOT / "tests/e2e/allreduce.py"
    done = run(
        [
            "python3",
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            script,
            "t",
        ],
        env={"PROBE_DIR": str(probe_dir)},
    )
    assert done.returncode == 0, done.stdout
    assert [(r["sum"], r["argv"]) for r in reports(probe_dir)] == [(2, ["t"]), (2, ["t"])]


def test_bazel_test_runs_ranks_in_the_network_blocked_sandbox(built):
    done = bazel("test", "//tests/e2e:sandbox_test")
    assert done.returncode == 0, done.stdout
    assert "1 test passes" in done.stdout
