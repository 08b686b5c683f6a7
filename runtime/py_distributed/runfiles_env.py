"""Find this binary's runfiles whichever way it was started, and hand them on to its children.

`bazel run` (Bazel 4) sets RUNFILES_MANIFEST_FILE only, `bazel test` sets RUNFILES_DIR, a binary
run from bazel-bin may have neither, and a remote-execution sandbox may hold a relocated tree.
"""

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

from runfiles import runfiles

from py_distributed.errors import UsageError

_RUNFILES_VARS = ("RUNFILES_MANIFEST_FILE", "RUNFILES_DIR", "JAVA_RUNFILES")


@dataclass(frozen=True)
class BinaryRunfiles:
    """The runfiles of one binary, checked to contain the file it was located by."""

    runfiles: runfiles.Runfiles
    found_by: str  # what led to them, for messages
    anchor: str  # the real path of the file they were located by

    def child_env(self) -> dict[str, str | None]:
        """Runfiles variables for child processes; None for one they must not inherit."""
        env: dict[str, str | None] = dict.fromkeys(_RUNFILES_VARS)
        env.update({name: value for name, value in self.runfiles.EnvVars().items() if value})
        return env

    def path(self, path: str) -> str:
        """Where the file at runfiles path `path` is; UsageError where these runfiles lack it."""
        found = _existing(self.runfiles, path)
        if found is None:
            raise UsageError(f"{path} is missing from {self.found_by}: rebuild the binary")
        return found

    def anchored_at(self, path: str) -> "BinaryRunfiles":
        """The same runfiles, anchored at the file at runfiles path `path` (the binary's stub)."""
        return replace(self, anchor=self.path(path))


def locate(anchor: str, environ: Mapping[str, str], main_file: str) -> BinaryRunfiles:
    """The runfiles that contain `anchor`, a canonical runfiles path (the binary's settings file).

    Tries, in order: the `.runfiles` directory that encloses `main_file` (where the stub ran this
    process from), RUNFILES_DIR, and RUNFILES_MANIFEST_FILE (a manifest maps sources to the source
    tree, not to the runfiles). A candidate is taken only if it contains `anchor`: inherited
    variables may belong to another binary (rules_python#3187: a py_binary started by another).
    """
    tried = []
    for found_by, make in _candidates(environ, main_file):
        try:
            files = make()
        except OSError:
            tried.append(found_by)
            continue
        found = _existing(files, anchor)
        if found:
            return BinaryRunfiles(files, found_by, found)
        tried.append(found_by)
    where = ", ".join(tried) or "no RUNFILES_MANIFEST_FILE, no RUNFILES_DIR, no enclosing .runfiles"
    raise UsageError(
        f"cannot find this binary's runfiles ({anchor} not in: {where}); run it with bazel run, or"
        " from bazel-bin beside its .runfiles directory"
    )


def _existing(files: runfiles.Runfiles, path: str) -> str | None:
    # source_repo="": the paths here are canonical, so no caller-based repo mapping applies.
    found = files.Rlocation(path, source_repo="")
    return found if found and os.path.exists(found) else None


def tree_running(main_file: str) -> BinaryRunfiles | None:
    """The runfiles tree that `main_file` runs from; None outside Bazel."""
    tree = enclosing_runfiles_dir(main_file)
    return _tree_runfiles(tree, main_file, main_file) if tree else None


def _tree_runfiles(tree: str, main_file: str, anchor: str) -> BinaryRunfiles:
    return BinaryRunfiles(
        runfiles.CreateDirectoryBased(tree), f"the tree around {main_file}", anchor
    )


def binary_running(main_file: str) -> BinaryRunfiles | None:
    """The runfiles of the Bazel binary whose main is `main_file`, anchored at its stub; None
    outside Bazel.

    For a plain py_binary, whose stub's runfiles path no rule wrote down: the stub of
    `<dir>/<name>.runfiles` is `<dir>/<name>`, or, in a tree copied on its own, `<name>` in the
    main's own package inside the tree, where py_binary puts it.
    """
    tree = enclosing_runfiles_dir(main_file)
    if tree is None:
        return None
    name = os.path.basename(tree).removesuffix(".runfiles")
    package = os.path.dirname(os.path.relpath(os.path.abspath(main_file), tree))
    for stub in (tree.removesuffix(".runfiles"), os.path.join(tree, package, name)):
        if os.path.isfile(stub) and os.access(stub, os.X_OK):
            return _tree_runfiles(tree, main_file, stub)
    raise UsageError(
        f"{main_file} runs from the runfiles tree {tree}, which has no stub {name} beside it or in"
        " its package; start workers with PYTHONPATH (set_python_path_in_subprocess=True)"
    )


def _candidates(
    environ: Mapping[str, str], main_file: str
) -> Iterator[tuple[str, Callable[[], runfiles.Runfiles]]]:
    tree = enclosing_runfiles_dir(main_file)
    if tree:
        yield f"the tree around {main_file}", lambda: runfiles.CreateDirectoryBased(tree)
    directory = environ.get("RUNFILES_DIR", "")
    if directory:
        if os.path.basename(directory) == "MANIFEST" and os.path.isfile(directory):
            # The Bazel 4 stub sets RUNFILES_DIR to <tree>/MANIFEST when the tree has no sibling
            # <tree>_manifest, as in a relocated copy of the tree.
            directory = os.path.dirname(directory)
        yield f"RUNFILES_DIR={directory}", lambda: runfiles.CreateDirectoryBased(directory)
    manifest = environ.get("RUNFILES_MANIFEST_FILE", "")
    if manifest:
        yield f"RUNFILES_MANIFEST_FILE={manifest}", lambda: runfiles.CreateManifestBased(manifest)


def enclosing_runfiles_dir(path: str) -> str | None:
    """The nearest `*.runfiles` directory that contains `path`, as the Bazel stub finds its own."""
    current = os.path.abspath(path)
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        if current.endswith(".runfiles") and os.path.isdir(current):
            return current
        current = parent
