"""How a worker starts: one small class per way, behind one interface.

torchrun is told what to execute for each worker (`torchrun_args`) and the launcher puts what the
workers need into the environment torchrun hands down (`environment`).
"""

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from py_distributed.errors import UsageError
from py_distributed.runfiles_env import BinaryRunfiles, enclosing_runfiles_dir

# Environment changes for the workers: a value to set, or None to unset.
Environment = Mapping[str, str | None]


class WorkerEntry(Protocol):
    """One way of starting a worker."""

    def torchrun_entry(self) -> list[str]:
        """torchrun's arguments that name what each worker executes; the user's arguments follow."""
        ...

    def environment(self) -> Environment:
        """What the workers need in their environment."""
        ...


@dataclass(frozen=True)
class StubEntry:
    """Each worker re-enters the Bazel binary through its own stub (`torchrun --no-python STUB`).

    The stub rebuilds the binary's import path and picks its interpreter, so a worker is the binary
    itself: same imports, data and interpreter as the launcher, whatever the py rules' bootstrap.
    """

    stub: str
    runfiles_env: Environment

    def torchrun_entry(self) -> list[str]:
        return ["--no-python", self.stub]

    def environment(self) -> Environment:
        return self.runfiles_env


@dataclass(frozen=True)
class InterpreterEntry:
    """Each worker is `python -u TARGET ARGS`, as torchrun starts workers by default.

    Outside Bazel that is all it takes. Under Bazel the bare interpreter knows nothing of the
    binary's imports, so `with_python_path` hands the workers the launcher's sys.path: the seed's
    `set_python_path_in_subprocess`, for binaries whose stub cannot start a second time.
    """

    target: tuple[str, ...]  # a script, or "-m" and a module
    env: Environment

    def torchrun_entry(self) -> list[str]:
        return list(self.target)

    def environment(self) -> Environment:
        return self.env


def with_python_path(target: Sequence[str], runfiles_env: Environment) -> InterpreterEntry:
    """Workers run `target` with the bare interpreter, PYTHONPATH from the launcher's sys.path."""
    return InterpreterEntry(tuple(target), {**runfiles_env, "PYTHONPATH": python_path(sys.path)})


def python_path(path: Sequence[str]) -> str:
    """`path` (the launcher's sys.path) as PYTHONPATH, less what any interpreter finds by itself.

    The interpreter's own library and site-packages are left out to keep the environment short:
    pytorch PR #152832 hit "Argument list too long" with a PYTHONPATH of the whole sys.path.
    """
    prefixes = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    kept = [p for p in path if p and not os.path.join(p, "").startswith(prefixes)]
    return os.pathsep.join(dict.fromkeys(kept))


def for_binary(kind: str, shim: str, runfiles: BinaryRunfiles) -> WorkerEntry:
    """The worker entry of a py_distributed_binary whose runfiles are anchored at its stub, `kind`
    being its worker_entry attribute."""
    if kind == "pythonpath":
        return with_python_path([shim], runfiles.child_env())
    return reentering(runfiles)


def reentering(runfiles: BinaryRunfiles) -> StubEntry:
    """Workers re-enter the Bazel binary whose stub anchors `runfiles`."""
    stub_path = runfiles.anchor
    # The Bazel stub finds its modules only from a runfiles tree beside or around itself.
    if not (os.path.isdir(stub_path + ".runfiles") or enclosing_runfiles_dir(stub_path)):
        raise UsageError(
            f"the stub {stub_path} has no runfiles tree to start workers from (built with"
            " --nobuild_runfile_links?); build the tree, or start workers with PYTHONPATH"
            ' (worker_entry = "pythonpath", set_python_path_in_subprocess=True)'
        )
    return StubEntry(stub_path, runfiles.child_env())
