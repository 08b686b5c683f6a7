"""Warm start: workers forked from an interpreter that has imported torch already.

torchrun's `--start-method` (PET_START_METHOD at run time, the `start_method` attribute in BUILD)
picks how torch elastic starts each worker; this module holds the two ways that fork, beside the
`spawn` ones of `launch.entry` (the default: each worker a new process that re-enters the
Bazel binary, or the bare interpreter with PYTHONPATH). Both go through torch elastic's own
function entrypoint, as `torchrun --run-path` does: the launcher hands `elastic_launch` a function,
and torch's MultiprocessContext starts the workers with torch.multiprocessing's start_processes.
Each worker then runs the program's work (`Work`: the user's main as __main__ with its own
arguments, or maybe_run_training's train_fn) and ends as every worker does (`run_forked`).

- `fork` (`ForkEntry`): each worker is forked from the launcher, which has imported torch once.
  The worker starts as a copy of the launcher: the launch's own signal handlers, exit handlers and
  logging level are reset (`_forget_launcher`); the rest of the program's state, module globals and
  an unseeded numpy's random state included, is the launcher's (Python's `random` is reseeded).
- `forkserver` (`ForkServerEntry`): each worker is forked from multiprocessing's forkserver, a new
  interpreter with the launcher's import path that has imported torch, this runtime and the
  program's declared imports: the modules that its main file imports at its top level
  (`declared_imports`), read from its source without running it, and those of the launcher's main
  module, which multiprocessing imports in each worker. The launcher starts it (`served`) before
  it imports torch itself, so that the two import torch at once, on two cores; each worker then
  takes the launcher's environment as it is when torch elastic starts the worker, as a forked
  worker has it, from its function's arguments (`_EnvironmentAtStart`), and leaves the server's
  exit handlers to the server (`py_distributed.launch.forkserver`).

The CUDA rule: no process that forks workers may have initialised CUDA (torch's "poison fork",
torch/cuda/__init__.py; the CUDA driver does not survive fork). The launch pipeline never
initialises CUDA: importing torch does not, and it counts devices through NVML
(CUDA_CHECK_WITHOUT_INIT). `chosen` checks, before the pipeline imports torch elastic, that
nothing in the launcher's program has (`cuda_touched`), and the fork method falls back to spawn if
something has. The forkserver is a new interpreter, so a program that touched CUDA may still use
it; each worker checks that the server had not (a declared import that initialises CUDA when
imported), and fails with that reason if it had.

Where a method cannot apply, `chosen` says why in one line and workers start with spawn.
"""

import ast
import contextlib
import functools
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from py_distributed.launch import console, environment
from py_distributed.launch.entry import Environment, Work, WorkerEntry, python_path_env
from py_distributed.worker import process_exit
from py_distributed.worker.run import run_forked

# For the launcher's own CUDA queries: torch.cuda.is_available() then counts devices through NVML
# instead of the CUDA runtime, which would initialise the CUDA driver in the launcher.
CUDA_CHECK_WITHOUT_INIT: Mapping[str, str] = {"PYTORCH_NVML_BASED_CUDA_CHECK": "1"}

# What the forkserver imports before the program's own imports, in this order: the module that ties
# the server's life to the launcher's first, then torch, then what unpickles the workers' function.
_SERVER_IMPORTS = ("py_distributed.launch.forkserver", "torch", "py_distributed.launch.warm_start")


@dataclass(frozen=True)
class ForkEntry:
    """Each worker is forked from the launcher (`torchrun --start-method=fork --run-path`)."""

    work: Work
    env: Environment

    def torchrun_entry(self) -> list[str]:
        return ["--start-method=fork", "--run-path", self.work.program]

    def function(self) -> Callable[..., object]:
        return _entrypoint(_forked_worker, self.work.run)

    def environment(self) -> Environment:
        return self.env


@dataclass(frozen=True)
class ForkServerEntry:
    """Each worker is forked from multiprocessing's forkserver, which has imported torch and the
    program's declared imports (`torchrun --start-method=forkserver --run-path`).

    The server is a bare interpreter, sys.executable, started with the launcher's environment:
    like the workers of `worker_entry = "pythonpath"`, it finds the binary's modules through
    PYTHONPATH, set from the launcher's sys.path.
    """

    work: Work
    env: Environment

    def torchrun_entry(self) -> list[str]:
        return ["--start-method=forkserver", "--run-path", self.work.program]

    def function(self) -> Callable[..., object]:
        return _entrypoint(_served_worker, _EnvironmentAtStart(), self.work.run)

    def environment(self) -> Environment:
        return python_path_env(self.env)


def chosen(method: str, spawned: WorkerEntry, *, name: str) -> WorkerEntry:
    """The way to start workers for `method` (torchrun's --start-method), on the program whose
    spawn entry is `spawned`; `spawned` itself for spawn, and, after a one-line notice naming the
    reason, where `method` cannot apply.

    It needs no torch: the launcher calls it before it imports torch, to start the forkserver
    (`served`) first.
    """
    if method == "spawn":
        return spawned
    reason = _unfit(method, spawned)
    if reason:
        notice = f"{name}: start_method={method}: {reason}; starting workers with spawn"
        print(notice, file=sys.stderr)
        return spawned
    work = spawned.work
    assert work is not None  # _unfit says so otherwise
    if method == "fork":
        # Output the program buffered would otherwise be written again by every worker.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
                stream.flush()
        return ForkEntry(work, spawned.environment())
    return ForkServerEntry(work, spawned.environment())


@contextlib.contextmanager
def served(entry: WorkerEntry) -> Iterator[None]:
    """For a ForkServerEntry, starts multiprocessing's forkserver now, and stops it at the end: a
    launch leaves nothing running. Nothing for the other entries.

    One left running by the program (multiprocessing keeps one per process, with the environment
    and imports of its start) is stopped first, so that this launch's workers come from a server
    with this launch's import path that has imported what `ForkServerEntry` says.
    """
    if not isinstance(entry, ForkServerEntry):
        yield
        return
    # multiprocessing imports the launcher's main module in each worker before it runs: the
    # binary's generated main, whose imports are the runtime's, or the maybe_run_training program.
    launcher_main = getattr(sys.modules["__main__"], "__file__", None)
    launcher_imports = declared_imports(launcher_main) if launcher_main else []
    _stop_forkserver()
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        [*_SERVER_IMPORTS, *launcher_imports, *declared_imports(entry.work.program)]
    )
    with environment.restored():
        environment.apply(entry.environment())
        multiprocessing.forkserver.ensure_running()
    try:
        yield
    finally:
        _stop_forkserver()


def _unfit(method: str, spawned: WorkerEntry) -> str:
    """Why `method` cannot start this program's workers; "" if it can."""
    if method not in multiprocessing.get_all_start_methods():
        return f"this platform has no {method}"
    work = spawned.work
    if work is None:
        return "the program has no main file for forked workers to run"
    if method == "fork":
        touched = cuda_touched()
        return f"{touched} here, and forked workers could not use CUDA" if touched else ""
    if sys.flags.ignore_environment:
        return "the interpreter ignores PYTHONPATH (-E or -I), where the forkserver finds modules"
    try:
        pickle.dumps(work.run)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        return f"the forkserver cannot send the workers their function ({error})"
    return ""


def cuda_touched() -> str:
    """What in this process has initialised CUDA, so that processes forked from it could not use
    it; "" if nothing has.

    torch.cuda.is_initialized() is torch's own state, set by its lazy initialisation, and inherited
    by a fork; none before torch is imported. Below it, the CUDA driver, loaded into this process by
    any use of the CUDA runtime (torch.cuda.is_available() without CUDA_CHECK_WITHOUT_INIT, another
    library), which torch's state does not show: a CUDA build of torch loads it only then, never on
    import.
    """
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised (torch.cuda.is_initialized())"
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            if "/libcuda.so" in maps.read():
                return "the CUDA driver (libcuda) is loaded"
    except OSError:  # not Linux: torch's state is all there is to go by
        pass
    return ""


def declared_imports(path: str) -> list[str]:
    """The modules that the Python file at `path` imports at its top level (`import a.b`, `from
    a.b import c`: "a.b"), in order: not those under `if`, `try` or in functions, nor relative ones.
    The file is parsed, not run; one that cannot be read or parsed declares none."""
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), path)
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[str] = []
    for statement in tree.body:
        if isinstance(statement, ast.Import):
            found += [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.module and not statement.level:
            found.append(statement.module)
    return [name for name in dict.fromkeys(found) if name != "__future__"]


def _stop_forkserver() -> None:
    # multiprocessing keeps one forkserver per process; _stop is the only way it offers to end one
    # (its own tests use it), and does nothing where none runs.
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()


def _entrypoint(function: Callable[..., None], *bound: object) -> Callable[..., object]:
    """`function(*bound, ...)`, named as `function`: torch elastic names a job after its entrypoint
    (launcher/api.py, _get_entrypoint_name)."""
    return functools.update_wrapper(functools.partial(function, *bound), function)


def _forked_worker(run: Callable[..., object], *args: str) -> None:
    """torch elastic's function entrypoint in a worker forked from the launcher."""
    _forget_launcher()
    _work(run, args)


def _served_worker(launcher: Mapping[str, str], run: Callable[..., object], *args: str) -> None:
    """torch elastic's function entrypoint in a worker forked from the forkserver, a new
    interpreter with nothing of the launcher's to forget. Its environment becomes the launcher's,
    `launcher`, with the variables that torch elastic has just set for this worker on top: those
    that differ from the server's own (`py_distributed.launch.forkserver`)."""
    from py_distributed.launch import forkserver  # imported already: the server's first import

    set_by_torch = {k: v for k, v in os.environ.items() if forkserver.ENVIRONMENT.get(k) != v}
    os.environ.clear()
    os.environ.update({**launcher, **set_by_torch})
    _work(run, args)


class _EnvironmentAtStart:
    """A stand-in for the launcher's os.environ that is pickled as a copy of it when it is pickled.

    torch elastic pickles a forkserver worker's function and arguments when it starts the worker,
    from the launching thread, inside the launch: os.environ then has every variable the launch
    sets for its workers, some only then (WORKERS_DIR_ENV, `launch.torchrun.run`), long after the
    server started.
    """

    def __reduce__(self) -> tuple[type[dict[str, str]], tuple[dict[str, str]]]:
        return dict, (dict(os.environ),)


def _work(run: Callable[..., object], args: Sequence[str]) -> None:
    # What the worker inherited stays shared with the process it was forked from: a full garbage
    # collection writes to every object it visits, and would copy that process's heap page by
    # page into each worker (as CPython's gc.freeze documentation warns, for fork).
    gc.freeze()

    def work() -> None:
        touched = cuda_touched()
        if touched:  # the forkserver's imports did it: nothing here can be undone
            raise RuntimeError(
                f"{touched} in the process this worker was forked from, so it cannot use CUDA:"
                " a module the main imports at its top level initialises CUDA when imported;"
                " initialise it in the main instead, or use start_method=spawn"
            )
        run(*args)

    run_forked(work)


def _forget_launcher() -> None:
    """What the launch set up in the launcher for itself, undone in a worker forked from it."""
    from py_distributed.launch import signals  # imports torch: the launcher imports this first

    signals.forget_in_worker()
    console.forget_in_worker()
    process_exit.forget_inherited()
