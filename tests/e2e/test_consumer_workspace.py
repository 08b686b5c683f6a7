"""Another workspace uses the ruleset as README says (WORKSPACE, and its `pip install` line in a
fresh virtualenv), and gets the loading-time error of a `main` missing from `srcs`."""

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from harness.bazel import ROOT, run, scratch_workspace
from harness.launch import reports

JOB = """
load("@rules_py_distributed//rules:defs.bzl", "py_distributed_binary")

py_distributed_binary(
    name = "job",
    srcs = ["allreduce.py", "harness/__init__.py", "harness/probe.py", "job.py"],
    main = "job.py",
    nproc_per_node = 2,
    deps = ["@py_distributed_pypi//torch"],
)
"""

# The consumer's main: notes which Python runs each worker, then is the all-reduce probe (with its
# library, tests/harness/probe.py, as the consumer's harness/probe.py).
JOB_MAIN = """
import os, runpy, sys

with open(os.path.join(os.environ["PROBE_DIR"], "prefix" + os.environ["RANK"]), "w") as f:
    f.write(sys.prefix)
runpy.run_path(os.path.join(os.path.dirname(__file__), "allreduce.py"), run_name="__main__")
"""

MISSING_MAIN = """
load("@rules_py_distributed//rules:defs.bzl", "py_distributed_binary")

py_distributed_binary(
    name = "missing",
    srcs = ["allreduce.py"],
    main = "missing.py",
    deps = ["@py_distributed_pypi//torch"],
)
"""


def readme_pip_packages() -> list[str]:
    """The packages README's WORKSPACE section tells a user to `pip install`."""
    (command,) = re.findall(r"`pip install ([^`]+)`", (ROOT / "README.md").read_text("utf-8"))
    return command.split()


@pytest.fixture(scope="module")
def readme_python(tmp_path_factory) -> Path:
    """A fresh virtualenv holding exactly README's packages, at the lock's versions (so pip's
    cache serves them); its bin directory."""
    venv = tmp_path_factory.mktemp("readme_venv")
    done = run([sys.executable, "-m", "venv", venv], timeout=120)
    assert done.returncode == 0, done.stdout
    pip = [venv / "bin/python3", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    lock = ["-c", ROOT / "requirements_lock.txt"]
    done = run([*pip, *lock, *readme_pip_packages()], timeout=600)
    assert done.returncode == 0, done.stdout
    return venv / "bin"


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """A scratch workspace with its own Bazel server, shut down afterwards."""
    packages = {"": JOB, "missing": MISSING_MAIN}
    path = scratch_workspace(tmp_path_factory.mktemp("consumer"), packages)
    (path / "job.py").write_text(JOB_MAIN)
    shutil.copy(ROOT / "tests/e2e/allreduce.py", path)
    (path / "harness").mkdir()
    for name in ("__init__.py", "probe.py"):
        shutil.copy(ROOT / "tests/harness" / name, path / "harness")
    yield path
    run(["bazel", "shutdown"], cwd=path)


def test_macro_from_another_workspace_runs_two_ranks(consumer, readme_python, probe_dir):
    # Bazel's Python toolchain runs the first `python3` on PATH; .bazelrc hands PATH to actions.
    done = run(
        ["bazel", "run", "//:job", "--", "from consumer"],
        cwd=consumer,
        env={
            "PATH": f"{readme_python}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": "",
            "PROBE_DIR": str(probe_dir),
        },
    )
    assert done.returncode == 0, done.stdout
    assert [(r["sum"], r["argv"]) for r in reports(probe_dir)] == [(2, ["from consumer"])] * 2
    prefixes = {Path(p.read_text()).resolve() for p in probe_dir.glob("prefix*")}
    assert prefixes == {readme_python.parent.resolve()}


def test_main_not_in_srcs_fails_at_loading_time_naming_target_and_fix(consumer):
    done = run(["bazel", "build", "//missing:all"], cwd=consumer)
    assert done.returncode != 0
    message = 'py_distributed_binary(name = "missing"): main = "missing.py" is not in srcs;'
    assert f"{message} add it to srcs" in done.stdout, done.stdout
