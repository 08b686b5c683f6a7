"""`maybe_run_training` on one host: from a plain py_binary, outside Bazel, failures, bad input."""

import json
import os
import shutil
import sys

import pytest
from harness.bazel import ROOT, run
from harness.launch import probe_env, reports

SEED_API = "tests/e2e/seed_api"
EXPECTED_KWARGS = {
    "lr": ["float", "0.5"],
    "tiny": ["float", "1e-300"],
    "epochs": ["int", "3"],
    "verbose": ["bool", "True"],
    "resume": ["NoneType", "None"],
    "name": ["str", repr("a b=c\n--d ü")],
    "layers": ["list", "[64, 32]"],
    "schedule": ["dict", "{'warmup': 1, 'decay': (0.1, None)}"],
}


def assert_typed_kwargs_from_the_launcher(found, world=2):
    assert [r["rank"] for r in found] == list(range(world))
    for report in found:
        assert report["sum"] == world and report["is_distributed_worker"]
        kwargs = dict(report["kwargs"])
        # Evaluated by the launcher, not again by each worker as the seed's workers did.
        assert kwargs.pop("evaluated_by") == ["int", str(report["launcher_pid"])]
        assert kwargs == EXPECTED_KWARGS


def test_plain_py_binary_workers_reenter_its_stub_with_the_launchers_typed_kwargs(
    built, probe_dir, strace
):
    done, execs = strace([built / SEED_API, "--x=1", "a b"], env=probe_env(probe_dir))
    assert done.returncode == 0, done.stdout
    found = reports(probe_dir)
    assert_typed_kwargs_from_the_launcher(found)
    assert all(r["argv"] == ["--x=1", "a b"] for r in found)
    assert done.stdout.count("seed_api: launcher") == 1
    assert "seed_api: environment changed: []" in done.stdout
    stub = str(built / SEED_API)
    assert len([e for e in execs if e.path == stub]) == 3  # the launcher, then one per worker


def test_set_python_path_in_subprocess_starts_workers_with_the_launchers_sys_path(
    built, probe_dir, strace
):
    env = {**probe_env(probe_dir, pythonpath=1), "PY_DISTRIBUTED_VERBOSE": "1"}
    done, execs = strace([built / SEED_API], env=env)
    assert done.returncode == 0, done.stdout
    found = reports(probe_dir)
    assert_typed_kwargs_from_the_launcher(found)
    runfiles = str(built / f"{SEED_API}.runfiles")
    assert all(runfiles in r["pythonpath"] for r in found)
    stub = str(built / SEED_API)
    assert len([e for e in execs if e.path == stub]) == 1  # only the launcher came through it
    # module_name is __name__ of a script: the workers run the script with the bare interpreter.
    line = next(x for x in done.stdout.splitlines() if ": torchrun --" in x)
    assert "--no-python" not in line and line.endswith("/tests/e2e/seed_api.py"), line


def test_a_runfiles_tree_without_its_stub_still_runs_with_set_python_path(
    built, probe_dir, tmp_path
):
    # As a remote-execution input tree that carries the runfiles but not the binary's stub.
    tree = tmp_path / "seed_api.runfiles"
    shutil.copytree(built / (SEED_API + ".runfiles"), tree, symlinks=False)
    workspace = tree / "rules_py_distributed"
    (workspace / SEED_API).unlink()
    main = workspace / (SEED_API + ".py")
    # The `imports` of the binary's libraries, as its stub would set them: //runtime's, and
    # //tests/harness:probe's.
    paths = [str(workspace / "runtime"), str(workspace / "tests")]
    imports = {"PYTHONPATH": os.pathsep.join(paths)}
    refused = run([sys.executable, main], env={**probe_env(probe_dir), **imports})
    assert refused.returncode == 2 and "which has no stub seed_api" in refused.stdout
    done = run([sys.executable, main], env={**probe_env(probe_dir, pythonpath=1), **imports})
    assert done.returncode == 0, done.stdout
    assert_typed_kwargs_from_the_launcher(reports(probe_dir))


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        ([sys.executable, "-m", "seed_api"], None),  # __name__ of a module run with -m
        ([sys.executable, "tests/e2e/seed_api.py"], None),  # __name__ of a script
        ([sys.executable, "tests/e2e/seed_api.py"], "seed_api"),  # a dotted module, as the seed
    ],
)
def test_outside_bazel_workers_rerun_the_module_or_script(probe_dir, argv, module):
    env = probe_env(probe_dir, **({"module": module} if module else {}))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "runtime"), str(ROOT / "tests"), str(ROOT / "tests/e2e")]
    )
    done = run(argv, env=env)
    assert done.returncode == 0, done.stdout
    assert_typed_kwargs_from_the_launcher(reports(probe_dir))


@pytest.mark.parametrize(("failures", "status"), [("1:exit7", 7), ("1:raise", 1)])
def test_a_failed_rank_is_the_launchers_exit_status(built, probe_dir, failures, status):
    done = run([built / SEED_API], env=probe_env(probe_dir, failures=failures))
    assert done.returncode == status, done.stdout
    assert "seed_api: environment changed: []" in done.stdout  # also when it raises SystemExit
    if failures.endswith("raise"):
        assert done.stdout.count("RuntimeError: probe failure on rank 1") == 1, done.stdout


def test_scheduler_world_size_and_rank_do_not_make_the_launcher_a_worker(built, probe_dir):
    # Kubeflow's PyTorchJob sets these on the launcher's own pod.
    scheduler = {"WORLD_SIZE": "1", "RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}
    done = run([built / SEED_API], env={**probe_env(probe_dir), **scheduler})
    assert done.returncode == 0, done.stdout
    assert done.stdout.count("seed_api: launcher") == 1
    assert_typed_kwargs_from_the_launcher(reports(probe_dir))


@pytest.mark.parametrize(
    ("probe", "env", "message"),
    [
        ({"nproc": 0}, {}, "nproc_per_node='0' (from maybe_run_training): use an int"),
        (
            {"is_chief": 1},
            {
                "TF_CONFIG": json.dumps(
                    {
                        "cluster": {"chief": ["10.0.0.1:1"], "worker": ["10.0.0.2:1"]},
                        "task": {"type": "worker", "index": 0},
                    }
                )
            },
            "is_chief=True, but TF_CONFIG makes this node rank 1",
        ),
        ({}, {"TF_CONFIG": "{"}, "TF_CONFIG: not JSON"),
        ({}, {"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NODEID": "2"}, "SLURM_NODEID='2': use an"),
        ({"pythonpath": 1, "module": "no such"}, {}, "module_name='no such' is neither"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_worker(built, probe_dir, probe, env, message):
    done = run([built / SEED_API], env={**probe_env(probe_dir, **probe), **env})
    assert done.returncode == 2, done.stdout
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], done.stdout
    assert not any(probe_dir.iterdir())
