"""Another workspace uses the ruleset as README says (WORKSPACE), and gets loading-time errors."""

import shutil

import pytest
from bazel_harness import ROOT, reports, run

WORKSPACE = f"""
workspace(name = "consumer")

local_repository(name = "rules_py_distributed", path = "{ROOT}")

load("@rules_py_distributed//tools/bazel4_offline:repositories.bzl", "bazel4_offline_repositories")

bazel4_offline_repositories(path = "{ROOT}/tools/bazel4_offline")

load("@rules_py_distributed//rules:repositories.bzl", "py_distributed_dependencies")

py_distributed_dependencies()
"""

JOB = """
load("@rules_py_distributed//rules:defs.bzl", "py_distributed_binary")

py_distributed_binary(
    name = "job",
    srcs = ["allreduce.py"],
    nproc_per_node = 2,
    deps = ["@py_distributed_pypi//torch"],
)
"""

BAD = {
    "nproc_per_node = 0": "nproc_per_node = 0; use an int in 1..1024 or one of auto, cpu, gpu, xpu",
    'nproc_per_node = "abc"': 'nproc_per_node = "abc"; use an int in 1..1024',
    "nproc_per_node = 5000": "nproc_per_node = 5000; use an int in 1..1024",
    'nnodes = "3:1"': 'nnodes = "3:1"; use None, a positive int or "MIN:MAX"',
    "max_restarts = -1": "max_restarts = -1; use an int >= 0",
    'rdzv_backend = "zk"': 'rdzv_backend = "zk"; use one of c10d, etcd, etcd-v2, static',
    'rdzv_endpoint = "h:70000"': 'rdzv_endpoint = "h:70000"; use "" or "HOST[:PORT]"',
    'rdzv_endpoint = "h:"': 'rdzv_endpoint = "h:"; use "" or "HOST[:PORT]"',
    'rdzv_conf = {"timeout": "1,2"}': 'rdzv_conf = {"timeout": "1,2"}; use a dict like',
    'worker_entry = "fork"': 'worker_entry = "fork"; use one of pythonpath, stub',
    'main = "missing.py"': 'main = "missing.py" is not in srcs; add it to srcs',
    'rdzv_conf = {"join-timeout": "1"}': 'rdzv_conf = {"join-timeout": "1"}; use a dict like',
    'rdzv_endpoint = "[zz]:1"': 'rdzv_endpoint = "[zz]:1"; use "" or "HOST[:PORT]"',
}


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """A scratch workspace with its own Bazel server, shut down afterwards."""
    path = tmp_path_factory.mktemp("consumer")
    (path / "WORKSPACE").write_text(WORKSPACE)
    (path / "BUILD.bazel").write_text(JOB)
    shutil.copy(ROOT / "tests/e2e/allreduce.py", path)
    (path / ".bazelrc").write_text((ROOT / ".bazelrc").read_text())
    for i, attribute in enumerate(BAD):
        (path / f"bad{i}").mkdir()
        (path / f"bad{i}" / "BUILD.bazel").write_text(
            JOB.replace("nproc_per_node = 2", attribute).replace('"job"', f'"bad{i}"')
        )
    yield path
    run(["bazel", "shutdown"], cwd=path)


def test_macro_from_another_workspace_runs_two_ranks(consumer, probe_dir):
    done = run(
        ["bazel", "run", "//:job", "--", "from consumer"],
        cwd=consumer,
        env={"PROBE_DIR": str(probe_dir)},
    )
    assert done.returncode == 0, done.stdout
    assert [(r["sum"], r["argv"]) for r in reports(probe_dir)] == [(2, ["from consumer"])] * 2


@pytest.mark.parametrize(("index", "attribute"), list(enumerate(BAD)))
def test_bad_attribute_fails_at_loading_time_naming_target_and_fix(consumer, index, attribute):
    done = run(["bazel", "build", f"//bad{index}:all"], cwd=consumer)
    assert done.returncode != 0
    assert f'py_distributed_binary(name = "bad{index}"): {BAD[attribute]}' in done.stdout, (
        done.stdout
    )
