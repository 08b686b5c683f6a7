"""A built binary depends on its runfiles tree alone, as on a remote-execution worker: not on the
source tree, Bazel's output base, runfiles variables, HOME, TMPDIR, or being able to write.

The source tree and the output base are taken away for real, in a mount namespace of the run's own
(root, as CI runs): an empty tmpfs over each, the virtualenv with the interpreter bound back.
"""

import shutil
from pathlib import Path

import pytest
from harness.bazel import BIN, ROOT, bazel, run
from harness.launch import reports

STUB = "tests/e2e/allreduce"
# Variables a Bazel launch or a developer's shell may hold that would point the binary somewhere.
UNSET = ("RUNFILES_DIR", "RUNFILES_MANIFEST_FILE", "JAVA_RUNFILES", "BUILD_WORKSPACE_DIRECTORY")


@pytest.fixture(scope="module")
def output_base() -> Path:
    done = bazel("info", "output_base")
    assert done.returncode == 0, done.stdout
    return Path(done.stdout.strip().splitlines()[-1])


def in_namespace(setup: str, cmd: list[str], *, cwd: Path, unset: tuple[str, ...] = ()):
    """Runs `cmd` after the shell lines `setup`, in a mount namespace of its own."""
    script = f'set -e\n{setup}\nexec env {" ".join(f"-u {n}" for n in UNSET + unset)} "$@"'
    return run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd], cwd=cwd
    )


def assert_all_reduced(probe_dir: Path, argv: list[str]) -> list[dict[str, object]]:
    found = reports(probe_dir)
    assert [(r["rank"], r["sum"], r["argv"]) for r in found] == [(0, 2, argv), (1, 2, argv)]
    return found


def test_copied_binary_runs_with_the_source_tree_and_output_base_gone(
    built, probe_dir, tmp_path, output_base
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(BIN / STUB, elsewhere / "allreduce")
    shutil.copytree(BIN / f"{STUB}.runfiles", elsewhere / "allreduce.runfiles", symlinks=False)
    assert not (elsewhere / "allreduce.runfiles_manifest").exists()
    assert not [p for p in (elsewhere / "allreduce.runfiles").rglob("*") if p.is_symlink()]
    venv, stash = ROOT / ".venv", tmp_path / "venv"
    stash.mkdir()
    setup = f"""
mount --bind {venv} {stash}
mount -t tmpfs gone {ROOT}
mount -t tmpfs gone {output_base}
mkdir {venv} && mount --bind {stash} {venv}
test "$(ls -A {ROOT})" = .venv && test -z "$(ls -A {output_base})"
"""
    done = in_namespace(
        setup, ["env", f"PROBE_DIR={probe_dir}", elsewhere / "allreduce", "moved"], cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout
    found = assert_all_reduced(probe_dir, ["moved"])
    assert all(str(r["file"]).startswith(str(elsewhere)) for r in found), found


def test_binary_runs_without_home_and_tmpdir(built, probe_dir, tmp_path):
    cmd = ["env", f"PROBE_DIR={probe_dir}", BIN / STUB, "bare"]
    done = in_namespace("", cmd, cwd=tmp_path, unset=("HOME", "TMPDIR"))
    assert done.returncode == 0, done.stdout
    assert_all_reduced(probe_dir, ["bare"])


def test_binary_runs_with_the_source_tree_read_only(built, probe_dir, tmp_path):
    setup = f"""
mount --bind {ROOT} {ROOT}
mount -o remount,bind,ro {ROOT}
! touch {ROOT}/tests/e2e/written 2>/dev/null
"""
    cmd = ["env", f"PROBE_DIR={probe_dir}", BIN / STUB, "ro"]
    done = in_namespace(setup, cmd, cwd=ROOT / "tests")
    assert done.returncode == 0, done.stdout
    assert not (ROOT / "tests/e2e/written").exists()
    assert_all_reduced(probe_dir, ["ro"])
