"""The seed's Python API: one script is both torchrun's launcher and every worker.

    if __name__ == "__main__":
        maybe_run_training(train, "my_pkg.main", lr=3e-4, layers=[64, 64])

In the launcher this starts torchrun, whose workers re-enter the same program (the Bazel binary
under Bazel, else `module_name`) and there call `train(lr=3e-4, layers=[64, 64])`. Kept from
twitter/the-algorithm-ml `common/run_training.py`, with its defects fixed: the workers' failure
status reaches the caller, keyword arguments arrive with their Python types instead of as
`--key=value` strings, and a scheduler's WORLD_SIZE/RANK do not make a launcher a worker.
"""

import base64
import functools
import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from typing import Any

from py_distributed import runfiles_env
from py_distributed.cluster import Cluster, machine_from_env
from py_distributed.errors import UsageError, exit_on_usage_error
from py_distributed.launch import entry, pipeline
from py_distributed.worker import is_distributed_worker
from py_distributed.worker.run import run

# The launcher's training_kwargs, pickled, for its workers: the seed's kwargs travelled as
# `--key=value` arguments and arrived as strings, or not at all.
KWARGS_ENV = "PY_DISTRIBUTED_TRAINING_KWARGS"
# Linux refuses an environment string over 128 KiB (MAX_ARG_STRLEN) when a worker starts.
_KWARGS_MAX_BYTES = 120 * 1024
# Workers per node when neither an argument, PET_NPROC_PER_NODE, CUDA nor the cluster description
# says: torchrun's own default.
CPU_NPROC_PER_NODE = 1
_SOURCE = "maybe_run_training"


def maybe_run_training(
    train_fn: Callable[..., object],
    module_name: str,
    nproc_per_node: int | str | None = None,
    num_nodes: int | None = None,
    set_python_path_in_subprocess: bool = False,
    is_chief: bool | None = False,
    **training_kwargs: Any,
) -> None:
    """In a worker, runs `train_fn(**training_kwargs)`; in the launcher, starts the workers.

    Args:
      train_fn: the training function each worker calls.
      module_name: what workers run outside Bazel: a dotted module (`my_pkg.main`, run with -m),
        a script path, or `__name__` of the calling script. Under Bazel, workers re-enter the
        binary itself, through its stub, and this only names the job in messages.
      nproc_per_node: workers per node. None: PET_NPROC_PER_NODE, else one per visible CUDA
        device ("gpu": those this node claims, docs/gpus.md), else the cluster description's
        accelerators per node, else CPU_NPROC_PER_NODE (1).
      num_nodes: nodes in the job. None: PET_NNODES, else the cluster description's (chief and
        workers: 1 + number of workers), else 1.
      set_python_path_in_subprocess: start workers with the bare interpreter and PYTHONPATH from
        the launcher's sys.path (interpreter prefixes left out, so the variable stays short),
        instead of through the Bazel binary's stub.
      is_chief: True asserts that this node is the chief (node rank 0) of the cluster description;
        which node hosts the rendezvous is always decided by the description.
      **training_kwargs: passed to `train_fn` in every worker, as the launcher's Python objects
        (pickled, at most 120 KiB as base64 text): types, nesting and any string survive.

    In a worker this does not return: the process ends with train_fn's status (0, SystemExit's
    code, or 1 with the traceback shown by the launcher), skipping interpreter teardown, where
    torch 2.13 with gloo aborts about once in ten runs. In the launcher it returns once every
    worker has succeeded, and otherwise exits with the job's status: the failed rank's exit code,
    128+N for signal N, 2 for a bad input (found before any worker starts). Workers forked by the
    fork or forkserver start method (PET_START_METHOD, launch.warm_start) call train_fn
    without running the program again: call this under `if __name__ == "__main__":`.
    """
    if is_distributed_worker():

        def train() -> object:
            received = _received_kwargs(os.environ)
            return train_fn(**(training_kwargs if received is None else received))

        run(train)

    name = os.path.basename(sys.argv[0]) if module_name == "__main__" else module_name
    with exit_on_usage_error(name):
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # multiprocessing's own mark of a process that imports its parent's main module, as
            # forkserver's workers do before they run: this call would launch a job in each.
            raise UsageError(
                "maybe_run_training was called while multiprocessing imports the main module in"
                ' a forkserver worker; call it under `if __name__ == "__main__":`'
            )
        cluster = machine_from_env()
        if is_chief and not cluster.is_chief:
            raise UsageError(
                f"is_chief=True, but {cluster.source} makes this node rank {cluster.node_rank};"
                " fix the description, or drop is_chief"
            )
        payload = _pickled(training_kwargs)
    job = pipeline.Job(
        name,
        _explicit(nproc_per_node, num_nodes, cluster),
        _SOURCE,
        lambda: _worker_entry(module_name, set_python_path_in_subprocess, train_fn),
        sys.argv[1:],
        environment={KWARGS_ENV: payload},
        cluster=cluster,
    )
    status = pipeline.launch(job)
    if status:
        sys.exit(status)


def _explicit(
    nproc_per_node: int | str | None, num_nodes: int | None, cluster: Cluster
) -> dict[str, str]:
    explicit = {}
    if num_nodes is not None:
        explicit["nnodes"] = str(num_nodes)
    if nproc_per_node is not None:
        explicit["nproc_per_node"] = str(nproc_per_node)
    elif not os.environ.get("PET_NPROC_PER_NODE"):
        import torch  # the launcher imports it anyway; only here is it needed this early

        # Counted through NVML, without initialising CUDA in the launcher (warm_start).
        devices = torch.cuda.device_count()
        count = cluster.this_machine.num_accelerators or CPU_NPROC_PER_NODE
        # "gpu": one rank per GPU this node claims, all of them unless PY_DISTRIBUTED_GPUS says.
        explicit["nproc_per_node"] = "gpu" if devices else str(count)
    return explicit


def _worker_entry(
    module_name: str, python_path: bool, train_fn: Callable[..., object]
) -> entry.WorkerEntry:
    """Re-entry through the Bazel stub under Bazel; else `python -u [-m] module_name`. A worker
    forked from this program (warm_start) calls `train_fn` instead."""
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    work = None
    if main_file:
        work = entry.Work(os.path.abspath(main_file), functools.partial(_train, train_fn))
    if python_path:
        tree = runfiles_env.tree_running(main_file) if main_file else None
        env = tree.child_env() if tree else {}
        return entry.with_python_path(_target(module_name), env, work)
    binary = runfiles_env.binary_running(main_file) if main_file else None
    if binary is not None:
        return entry.reentering(binary, work)
    return entry.InterpreterEntry(tuple(_target(module_name)), {}, work)


def _train(train_fn: Callable[..., object], program: str, *args: str) -> None:
    """A forked worker's work: `train_fn` with the launcher's training_kwargs."""
    sys.argv = [program, *args]
    train_fn(**(_received_kwargs(os.environ) or {}))


def _target(module_name: str) -> list[str]:
    """torchrun's target for `module_name`: ["-m", module] or [script]."""
    if module_name == "__main__":  # the caller passed __name__ from a script or `python -m`
        main = sys.modules["__main__"]
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            return ["-m", spec.name]
        return [os.path.abspath(main.__file__ or "")]
    if module_name.endswith(".py") or os.sep in module_name:
        return [module_name]
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise UsageError(
            f"module_name={module_name!r} is neither a dotted module nor a .py path;"
            " pass e.g. 'my_pkg.main', 'my_pkg/main.py' or __name__"
        )
    return ["-m", module_name]


def _pickled(kwargs: Mapping[str, Any]) -> str:
    """`kwargs` for the workers' environment; UsageError naming the first value that cannot go."""
    for key, value in kwargs.items():
        try:
            pickle.dumps(value)
        except Exception as error:  # noqa: BLE001 - pickling raises whatever a value's reducer does
            raise UsageError(
                f"training_kwargs[{key!r}] cannot be sent to the workers ({error}); pass"
                " picklable values, e.g. settings rather than live objects"
            ) from None
    payload = base64.b64encode(pickle.dumps(dict(kwargs))).decode("ascii")
    if len(payload) > _KWARGS_MAX_BYTES:
        raise UsageError(
            f"training_kwargs take {len(payload)} bytes pickled and base64-encoded, more than the"
            f" environment can carry ({_KWARGS_MAX_BYTES}); pass large values as a file path"
        )
    return payload


def _received_kwargs(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The launcher's training_kwargs in a worker it started, None in any other worker."""
    payload = environ.get(KWARGS_ENV)
    if payload is None:
        return None
    kwargs: dict[str, Any] = pickle.loads(base64.b64decode(payload))
    return kwargs
