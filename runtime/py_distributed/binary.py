"""Entry point of every py_distributed_binary: its generated main calls `main`, in every process.

The same binary is the launcher (started by the user) and each worker (started by torchrun through
the binary's stub); `main` tells them apart and hands over to `worker` or to the launch pipeline.
A worker imports only what it runs: the launch pipeline's modules are imported in the launcher.
"""

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from py_distributed import runfiles_env
from py_distributed.errors import exit_on_usage_error
from py_distributed.worker import is_distributed_worker, process_exit
from py_distributed.worker.run import run_main


def main(
    *,
    target: str,
    stub: str,
    main: str,
    shim: str,
    build_values: Mapping[str, str],
    torchrun_args: Sequence[str],
    worker_entry: str,
    test: bool = False,
) -> NoReturn:
    """Runs `target` as a worker or as its launcher. Paths are canonical runfiles paths.

    Args:
      target: the binary's label, for messages.
      stub: runfiles path of the binary's own executable, which workers re-enter.
      main: runfiles path of the user's torchrun-style script.
      shim: the generated main's own file.
      build_values: torchrun settings from BUILD, checked at build time; PET_* variables win.
      torchrun_args: further torchrun flags from BUILD.
      worker_entry: "stub" or "pythonpath", see `py_distributed.launch.entry`.
      test: whether the binary is a py_distributed_test, run by `bazel test`.
    """
    args = sys.argv[1:]
    if is_distributed_worker():
        with exit_on_usage_error(target):
            script = runfiles_env.locate(main, os.environ, shim).anchor
        run_main(script, args)

    from py_distributed import bazel_test
    from py_distributed.launch import entry, pipeline

    def workers_start() -> entry.WorkerEntry:
        runfiles = runfiles_env.locate(stub, os.environ, shim)
        return entry.for_binary(worker_entry, shim, main, runfiles)

    job = pipeline.Job(target, build_values, "BUILD", workers_start, args, torchrun_args)
    process_exit.exit(bazel_test.launch(job) if test else pipeline.launch(job))
