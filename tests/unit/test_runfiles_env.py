"""Finding the binary's runfiles from each set of variables Bazel may leave, on real trees."""

import os
import sys
import sysconfig
from pathlib import Path

import pytest

from py_distributed.errors import UsageError
from py_distributed.launch import entry
from py_distributed.runfiles_env import locate

STUB = "ws/pkg/bin"
MAIN = "ws/pkg/_bin_main.py"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A bazel-bin layout: pkg/bin (stub), pkg/bin.runfiles/ (tree), pkg/bin.runfiles_manifest."""
    out = tmp_path / "bazel-bin" / "pkg"
    (out / "bin.runfiles" / "ws" / "pkg").mkdir(parents=True)
    (out / "bin").write_text("#!/usr/bin/env python3\n")
    (out / "_bin_main.py").write_text("")
    for rpath, real in ((STUB, out / "bin"), (MAIN, out / "_bin_main.py")):
        os.symlink(real, out / "bin.runfiles" / rpath)
    manifest = "".join(
        f"{rpath} {real}\n" for rpath, real in ((STUB, out / "bin"), (MAIN, out / "_bin_main.py"))
    )
    (out / "bin.runfiles_manifest").write_text(manifest)
    (out / "bin.runfiles" / "MANIFEST").write_text(manifest)
    return out


def shim_in_tree(tree: Path) -> str:
    return str(tree / "bin.runfiles" / MAIN)


def test_manifest_only_as_under_bazel_run(tree):
    env = {"RUNFILES_MANIFEST_FILE": str(tree / "bin.runfiles_manifest")}
    found = locate(STUB, env, str(tree / "_bin_main.py"))  # main not inside a tree
    assert found.anchor == str(tree / "bin")
    assert found.child_env() == {
        "RUNFILES_MANIFEST_FILE": str(tree / "bin.runfiles_manifest"),
        "RUNFILES_DIR": str(tree / "bin.runfiles"),
        "JAVA_RUNFILES": str(tree / "bin.runfiles"),
    }


def test_runfiles_dir_only_as_under_bazel_test(tree):
    env = {"RUNFILES_DIR": str(tree / "bin.runfiles")}
    found = locate(STUB, env, "/nowhere/main.py")
    assert found.anchor == str(tree / "bin.runfiles" / STUB)
    # A stale manifest variable must not reach the children.
    assert found.child_env()["RUNFILES_MANIFEST_FILE"] is None


def test_no_variables_as_when_run_directly(tree):
    found = locate(STUB, {}, shim_in_tree(tree))
    assert found.anchor == str(tree / "bin.runfiles" / STUB)
    assert found.child_env()["RUNFILES_DIR"] == str(tree / "bin.runfiles")


def test_runfiles_dir_pointing_at_manifest_file_as_the_bazel4_stub_sets_it(tree):
    env = {"RUNFILES_DIR": str(tree / "bin.runfiles" / "MANIFEST")}
    assert locate(STUB, env, "/nowhere/main.py").anchor == str(tree / "bin.runfiles" / STUB)


@pytest.fixture
def inherited(tree, tmp_path) -> dict[str, str]:
    """Variables as a parent binary leaves them: its own RUNFILES_DIR, and our manifest."""
    other = tmp_path / "other.runfiles"
    other.mkdir()
    return {
        "RUNFILES_DIR": str(other),
        "RUNFILES_MANIFEST_FILE": str(tree / "bin.runfiles_manifest"),
    }


def test_the_tree_this_process_runs_from_wins_over_inherited_variables(tree, inherited):
    found = locate(MAIN, inherited, shim_in_tree(tree))
    # The manifest would map the main to its source file, outside the tree.
    assert found.anchor == str(tree / "bin.runfiles" / MAIN)


def test_variables_of_another_binary_are_skipped(tree, inherited):
    assert locate(STUB, inherited, "/nowhere/main.py").anchor == str(tree / "bin")


def test_nothing_to_go_on_is_one_line_naming_what_was_tried(tmp_path):
    with pytest.raises(UsageError) as raised:
        locate(STUB, {"RUNFILES_DIR": str(tmp_path)}, "/nowhere/main.py")
    assert f"RUNFILES_DIR={tmp_path}" in str(raised.value) and "\n" not in str(raised.value)


def test_runfiles_found_by_one_file_give_the_others_and_name_a_missing_one(tree):
    found = locate(MAIN, {}, shim_in_tree(tree))  # as the binary finds them, by its settings file
    assert found.anchored_at(STUB).anchor == str(tree / "bin.runfiles" / STUB)
    with pytest.raises(UsageError) as raised:
        found.path("ws/pkg/gone.py")
    assert str(raised.value) == (
        f"ws/pkg/gone.py is missing from the tree around {shim_in_tree(tree)}: rebuild the binary"
    )


def test_stub_without_a_tree_is_refused_for_stub_entry(tree):
    env = {"RUNFILES_MANIFEST_FILE": str(tree / "bin.runfiles_manifest")}
    found = locate(STUB, env, "/nowhere/main.py")
    os.rename(tree / "bin.runfiles", tree / "gone")
    with pytest.raises(UsageError, match='worker_entry = "pythonpath"'):
        entry.for_binary("stub", "/nowhere/main.py", "main.py", found)


def test_pythonpath_leaves_out_the_interpreters_own_paths(tmp_path):
    path = [
        str(tmp_path / "a"),
        sysconfig.get_path("stdlib"),
        str(tmp_path / "b"),
        str(tmp_path / "a"),
        "",
    ]
    assert entry.python_path(path) == os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    assert sys.prefix not in entry.python_path(sys.path)
