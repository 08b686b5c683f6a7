"""Entry point of every py_distributed_binary: its generated main calls `main`, in every process.

The same binary is the launcher (started by the user) and each worker (started by torchrun through
the binary's stub); `main` tells them apart and hands over to `worker` or to the launch pipeline.
A worker imports only what it runs: the launch pipeline's modules are imported in the launcher.
"""

import os
import sys
from typing import NoReturn

from py_distributed import runfiles_env
from py_distributed.errors import exit_on_usage_error
from py_distributed.settings import build
from py_distributed.worker import is_distributed_worker, process_exit
from py_distributed.worker.run import run_main


def main(*, settings: str, shim: str) -> NoReturn:
    """Runs the binary of `settings` as a worker or as its launcher.

    Args:
      settings: runfiles path of the binary's settings file (`py_distributed.settings.build`),
        which holds its label, stub, user's main and BUILD values; PET_* variables win over those.
      shim: the generated main's own file.
    """
    args = sys.argv[1:]
    # Until the settings file is read, the program is named as argparse would name it.
    with exit_on_usage_error(os.path.basename(shim)):
        runfiles = runfiles_env.locate(settings, os.environ, shim)
    binary = build.read(runfiles.anchor)
    if is_distributed_worker():
        with exit_on_usage_error(binary.target):
            script = runfiles.path(binary.main)
        run_main(script, args)

    from py_distributed import bazel_test
    from py_distributed.launch import entry, pipeline

    def workers_start() -> entry.WorkerEntry:
        at_stub = runfiles.anchored_at(binary.stub)
        return entry.for_binary(binary.worker_entry, shim, binary.main, at_stub)

    hang_timeout = binary.hang_timeout or (bazel_test.hang_timeout() if binary.test else "")
    job = pipeline.Job(
        binary.target,
        binary.values,
        "BUILD",
        workers_start,
        args,
        binary.torchrun_args,
        hang_timeout=hang_timeout,
        gpus=binary.gpus,
        gpu_wait=bazel_test.gpu_wait() if binary.test else "",
    )
    process_exit.exit(bazel_test.launch(job) if binary.test else pipeline.launch(job))
