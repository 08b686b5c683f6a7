"""How a worker starts: one small class per way, behind one interface.

torchrun is told how each worker starts and what it runs (`torchrun_entry`, and for workers forked
from a running interpreter the function they call, `function`), and the launcher puts what the
workers need into the environment torchrun hands down (`environment`). Here are the ways that start
each worker as a new process: re-entering the Bazel binary through its stub, or the bare
interpreter. The ways that fork workers from an interpreter that has imported torch already are in
`py_distributed.launch.warm_start`.
"""

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from py_distributed.errors import UsageError
from py_distributed.runfiles_env import BinaryRunfiles, enclosing_runfiles_dir
from py_distributed.worker.run import script_main

# Environment changes for the workers: a value to set, or None to unset.
Environment = Mapping[str, str | None]


class WorkerEntry(Protocol):
    """One way of starting a worker."""

    def torchrun_entry(self) -> list[str]:
        """torchrun's arguments that say how each worker starts and what it runs; the user's
        arguments follow."""
        ...

    def function(self) -> Callable[..., object] | None:
        """torch elastic's function entrypoint, called in each worker with what torchrun's
        `--run-path` runner would get (the program, then the user's arguments), in that runner's
        place; None for workers that run a command."""
        ...

    def environment(self) -> Environment:
        """What the workers need in their environment."""
        ...

    @property
    def work(self) -> "Work | None":
        """The program's work, for workers forked from an interpreter that runs it already
        (`py_distributed.launch.warm_start`); None where there is none."""
        ...


@dataclass(frozen=True)
class Work:
    """What a worker forked from the launcher does, instead of starting the program again.

    `run(program, *args)` is called in each worker as torchrun's `--run-path` calls its runner, so
    it must be picklable by reference (a module's function, or a functools.partial of one) for
    workers forked from multiprocessing's forkserver.
    """

    program: str  # the program's main file: what `--run-path` names, and the forkserver reads
    run: Callable[..., object]


@dataclass(frozen=True)
class StubEntry:
    """Each worker re-enters the Bazel binary through its own stub (`torchrun --no-python STUB`).

    The stub rebuilds the binary's import path and picks its interpreter, so a worker is the binary
    itself: same imports, data and interpreter as the launcher, whatever the py rules' bootstrap.
    """

    stub: str
    runfiles_env: Environment
    work: Work | None = None  # the same program's work, for a warm start

    def torchrun_entry(self) -> list[str]:
        return ["--no-python", self.stub]

    def function(self) -> None:
        return None

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
    work: Work | None = None  # the same program's work, for a warm start

    def torchrun_entry(self) -> list[str]:
        return list(self.target)

    def function(self) -> None:
        return None

    def environment(self) -> Environment:
        return self.env


def with_python_path(
    target: Sequence[str], runfiles_env: Environment, work: Work | None = None
) -> InterpreterEntry:
    """Workers run `target` with the bare interpreter, PYTHONPATH from the launcher's sys.path."""
    return InterpreterEntry(tuple(target), python_path_env(runfiles_env), work)


def python_path_env(runfiles_env: Environment) -> dict[str, str | None]:
    """`runfiles_env`, and PYTHONPATH from the launcher's sys.path, for a bare interpreter."""
    return {**runfiles_env, "PYTHONPATH": python_path(sys.path)}


def python_path(path: Sequence[str]) -> str:
    """`path` (the launcher's sys.path) as PYTHONPATH, less what any interpreter finds by itself.

    The interpreter's own library and site-packages are left out to keep the environment short:
    pytorch PR #152832 hit "Argument list too long" with a PYTHONPATH of the whole sys.path.
    """
    prefixes = tuple({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    kept = [p for p in path if p and not os.path.join(p, "").startswith(prefixes)]
    return os.pathsep.join(dict.fromkeys(kept))


def for_binary(kind: str, shim: str, main: str, runfiles: BinaryRunfiles) -> WorkerEntry:
    """The worker entry of a py_distributed_binary whose runfiles are anchored at its stub, `kind`
    being its worker_entry attribute and `main` the runfiles path of the user's main, which a
    forked worker runs as torchrun's --run-path would (`run_script`)."""
    script = runfiles.runfiles.Rlocation(main, source_repo="")
    work = Work(script, run_script) if script and os.path.isfile(script) else None
    if kind == "pythonpath":
        return with_python_path([shim], runfiles.child_env(), work)
    return reentering(runfiles, work)


def run_script(path: str, *args: str) -> None:
    """A forked worker's work for a script (torch.distributed.run.run_script_path's place)."""
    script_main(path, args)()


def reentering(runfiles: BinaryRunfiles, work: Work | None = None) -> StubEntry:
    """Workers re-enter the Bazel binary whose stub anchors `runfiles`."""
    stub_path = runfiles.anchor
    # The Bazel stub finds its modules only from a runfiles tree beside or around itself.
    if not (os.path.isdir(stub_path + ".runfiles") or enclosing_runfiles_dir(stub_path)):
        raise UsageError(
            f"the stub {stub_path} has no runfiles tree to start workers from (built with"
            " --nobuild_runfile_links?); build the tree, or start workers with PYTHONPATH"
            ' (worker_entry = "pythonpath", set_python_path_in_subprocess=True)'
        )
    return StubEntry(stub_path, runfiles.child_env(), work)
