"""Launcher mode: run torch elastic's torchrun in this process and keep the workers' exit status."""

import os
import shlex
import sys
from collections.abc import Sequence

from py_distributed.config import TorchrunConfig
from py_distributed.entry import WorkerEntry
from py_distributed.errors import exit_code_of_signal
from py_distributed.worker import RUN_ID_ENV


def torchrun_argv(config: TorchrunConfig, entry: WorkerEntry, args: Sequence[str]) -> list[str]:
    """torchrun's command line: its flags, the worker entry, then the user's arguments untouched."""
    return [*config.argv(), *entry.torchrun_args(), *args]


def launch(config: TorchrunConfig, entry: WorkerEntry, args: Sequence[str], *, name: str) -> int:
    """Starts the workers through torchrun and returns the exit status the job should have.

    That is 0, the exit code of the first failed worker (torchrun itself only says 1), or 128+N
    when a worker or the launcher was ended by signal N.
    """
    for key, value in entry.environment().items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    os.environ[RUN_ID_ENV] = config.rdzv_id
    argv = torchrun_argv(config, entry, args)
    print(f"{name}: torchrun {shlex.join(argv)}", file=sys.stderr, flush=True)

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        torchrun.run(torchrun.parse_args(argv))  # type: ignore[no-untyped-call]
    except ChildFailedError as failed:
        print(failed.format_msg(), file=sys.stderr)  # type: ignore[no-untyped-call]
        exitcode = failed.get_first_failure()[1].exitcode
        return exit_code_of_signal(-exitcode) if exitcode < 0 else exitcode or 1
    except SignalException as stopped:
        return exit_code_of_signal(stopped.sigval)
    return 0
