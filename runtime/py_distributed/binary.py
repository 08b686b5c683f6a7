"""Entry point of every py_distributed_binary: its generated main calls `main`, in every process.

The same binary is the launcher (started by the user) and each worker (started by torchrun through
the binary's stub); `main` tells them apart and hands over to `launcher` or `worker`.
"""

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from py_distributed import config, entry, runfiles_env, worker
from py_distributed.errors import exit_on_usage_error


def main(
    *,
    target: str,
    stub: str,
    main: str,
    shim: str,
    build_values: Mapping[str, str],
    torchrun_args: Sequence[str],
    worker_entry: str,
) -> NoReturn:
    """Runs `target` as a worker or as its launcher. Paths are canonical runfiles paths.

    Args:
      target: the binary's label, for messages.
      stub: runfiles path of the binary's own executable, which workers re-enter.
      main: runfiles path of the user's torchrun-style script.
      shim: the generated main's own file.
      build_values: torchrun knobs from BUILD; PET_* variables override them.
      torchrun_args: further torchrun flags from BUILD.
      worker_entry: "stub" or "pythonpath", see `py_distributed.entry`.
    """
    args = sys.argv[1:]
    with exit_on_usage_error(target):
        worker.refuse_foreign_worker()
        if worker.is_distributed_worker():
            script = runfiles_env.locate(main, os.environ, shim).path(main)
            assert script is not None  # locate() checked it
            worker.run_main(script, args)

        torchrun_config = config.for_this_node(build_values, "BUILD", torchrun_args, os.environ)
        runfiles = runfiles_env.locate(stub, os.environ, shim)
        worker_start = entry.for_binary(worker_entry, stub, shim, runfiles)
        # torch is imported only now, so that the checks above answer at once.
        from py_distributed import launcher

        launch = launcher.prepare(torchrun_config, worker_start, args)
    sys.exit(launcher.run(launch, name=target))
