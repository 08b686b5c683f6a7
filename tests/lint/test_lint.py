"""The linters CI holds the code to: buildifier, ruff, mypy --strict on the runtime."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check(*cmd: str) -> None:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def tracked(*patterns: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", *patterns], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_starlark_is_buildifier_clean():
    files = tracked("*.bzl", "*BUILD.bazel", "WORKSPACE", "MODULE.bazel")
    check("buildifier", "--mode=check", "--lint=warn", *files)


def test_python_is_ruff_clean():
    check("ruff", "check", ".")
    check("ruff", "format", "--check", ".")


def test_runtime_is_mypy_strict():
    check(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        "runtime/pyproject.toml",
        "runtime/py_distributed",
    )


def test_runtime_builds_as_a_typed_wheel(tmp_path):
    # From a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = tmp_path / "runtime"
    shutil.copytree(ROOT / "runtime", source)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    check(*pip, "-w", str(wheels), str(source))
    (wheel,) = wheels.glob("py_distributed-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "py_distributed/py.typed",
        "py_distributed/launch/pipeline.py",
        "py_distributed/worker/run.py",
    } <= names
