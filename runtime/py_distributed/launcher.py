"""Launcher mode: check the launch with torchrun's own parser, then run torch elastic in-process.

`prepare` decides (every bad input becomes a UsageError before any worker starts); `run` does, and
turns the outcome into the exit status the job should have.
"""

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch.distributed import run as torchrun
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import (
    RendezvousClosedError,
    RendezvousError,
    RendezvousParameters,
    RendezvousTimeoutError,
)
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from py_distributed import loopback
from py_distributed.config import STANDALONE_BACKEND, TorchrunConfig
from py_distributed.entry import WorkerEntry
from py_distributed.errors import UsageError, exit_code_of_signal, exit_code_of_worker
from py_distributed.node_address import IFNAME_VARIABLES
from py_distributed.worker import LAUNCHER_PID_ENV, RUN_ID_ENV


@dataclass(frozen=True)
class Launch:
    """A checked launch: torch elastic's configuration and what the workers get."""

    argv: list[str]  # torchrun's command line, to print
    config: LaunchConfig
    entrypoint: str | Callable[..., Any]
    entrypoint_args: list[str]
    environment: Mapping[str, str | None]  # for the workers: a value to set, None to unset

    @property
    def standalone(self) -> bool:
        return self.config.rdzv_backend == STANDALONE_BACKEND


# torch elastic's default (torch/distributed/elastic/rendezvous/dynamic_rendezvous.py).
_JOIN_TIMEOUT_DEFAULT = 600
# How long a failed multi-node launcher keeps its rendezvous store up for the other nodes.
_STORE_LINGER_SECONDS = 2

# torchrun flags that decide how workers start, which the launcher owns; torchrun would still read
# them from PET_* variables, and PET_STANDALONE would give each worker a run id of its own, so
# that every worker would launch again.
_OWNED_PET_VARIABLES = ("PET_STANDALONE", "PET_MODULE", "PET_RUN_PATH", "PET_NO_PYTHON")


def prepare(
    config: TorchrunConfig,
    entry: WorkerEntry,
    args: Sequence[str],
    environment: Mapping[str, str] | None = None,
) -> Launch:
    """Checks the launch as torchrun would, raising UsageError instead of starting workers.

    `args` go to every worker's main, `environment` into every worker's environment.
    """
    for name in _OWNED_PET_VARIABLES:
        os.environ.pop(name, None)

    def usage_error(message: str) -> NoReturn:  # argparse would print usage and exit
        raise UsageError(f"torchrun: {message}")

    try:
        parser = torchrun.get_args_parser()  # reads PET_* variables, some with int()
        parser.allow_abbrev = False  # "--stand" must not pass for --standalone
        parser.error = usage_error  # type: ignore[method-assign]
        # The user's arguments are not parsed: argparse would drop a leading "--" from them.
        parsed = parser.parse_args([*config.argv(), *entry.torchrun_entry()])
        if parsed.log_dir:
            _check_writable(parsed.log_dir)
        if config.nproc_per_node == "gpu" and not torch.cuda.is_available():
            # torchrun would only say "Cuda is not available."
            raise UsageError("nproc_per_node='gpu': no CUDA device is visible; use an int or cpu")
        launch_config, entrypoint, entrypoint_args = torchrun.config_from_args(parsed)
        if config.standalone:
            loopback.settings(_rendezvous_parameters(launch_config))
    except (ValueError, RuntimeError, AssertionError) as error:
        raise UsageError(f"torchrun: {error}") from None

    worker_env: dict[str, str | None] = {
        **entry.environment(),
        **(environment or {}),
        RUN_ID_ENV: config.rdzv_id,
        LAUNCHER_PID_ENV: str(os.getpid()),
    }
    if config.socket_ifname:
        # gloo and NCCL otherwise use the host name's address, loopback on many machines.
        worker_env.update(
            {name: config.socket_ifname for name in IFNAME_VARIABLES if name not in os.environ}
        )
    return Launch(
        [*config.argv(), *entry.torchrun_entry(), *args],
        launch_config,
        entrypoint,
        [*entrypoint_args, *args],
        worker_env,
    )


def _rendezvous_parameters(config: LaunchConfig) -> RendezvousParameters:
    """What torch elastic hands the rendezvous handler (launcher/api.py: launch_agent)."""
    return RendezvousParameters(
        backend=config.rdzv_backend,
        endpoint=config.rdzv_endpoint,
        run_id=config.run_id,
        min_nodes=config.min_nodes,
        max_nodes=config.max_nodes,
        local_addr=config.local_addr,
        **config.rdzv_configs,
    )


def _check_writable(directory: str) -> None:
    try:
        os.makedirs(directory, exist_ok=True)
        writable = os.access(directory, os.W_OK | os.X_OK)
    except OSError:
        writable = False
    if not writable:
        raise UsageError(
            f"log_dir={directory!r} (from --log-dir or PET_LOG_DIR): cannot write there;"
            " choose a writable directory"
        )


def run(launch: Launch, *, name: str) -> int:
    """Starts the workers through torch elastic and returns the exit status the job should have.

    That is 0, the exit code of the first failed worker (torchrun itself only says 1), or 128+N
    when a worker or the launcher was ended by signal N. torch elastic owns the signals: SIGTERM,
    SIGINT, SIGHUP and SIGQUIT stop every worker (grace period, then SIGKILL), which matters
    because `bazel run` does not forward Ctrl-C to the binary's children (bazel#3519).
    """
    if launch.standalone:
        loopback.register()
    print(f"{name}: torchrun {shlex.join(launch.argv)}", file=sys.stderr, flush=True)
    try:
        # torch elastic hands workers a copy of os.environ.
        with _environment(launch.environment):
            elastic_launch(launch.config, launch.entrypoint)(*launch.entrypoint_args)
    except ChildFailedError as failed:
        # The one place a worker's failure is shown: rank, exit code and traceback (error file).
        print(failed.format_msg(), file=sys.stderr)  # type: ignore[no-untyped-call]
        return exit_code_of_worker(failed.get_first_failure()[1].exitcode)
    except RendezvousError as error:
        print(f"{name}: error: {_rendezvous_failure(launch.config, error)}", file=sys.stderr)
        if launch.config.max_nodes > 1:
            # The node hosting the store has just closed the rendezvous in it. Nodes still waiting
            # poll it every second: keep it up so they read "closed", not "connection refused".
            time.sleep(_STORE_LINGER_SECONDS)
        return 1
    except SignalException as stopped:
        print(f"{name}: stopped by {stopped.sigval.name}; workers stopped", file=sys.stderr)
        return exit_code_of_signal(stopped.sigval)
    return 0


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """os.environ with `changes` (None: unset) for the block, as it was afterwards: a caller of
    maybe_run_training carries on without the workers' variables."""

    def apply(values: Mapping[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    saved = {key: os.environ.get(key) for key in changes}
    apply(changes)
    try:
        yield
    finally:
        apply(saved)


def _rendezvous_failure(config: LaunchConfig, error: RendezvousError) -> str:
    """One line for a rendezvous that did not form: torch's own message may be empty."""
    nodes = str(config.min_nodes)
    if config.max_nodes != config.min_nodes:
        nodes += f" to {config.max_nodes}"
    where = f"rendezvous {config.run_id} at {config.rdzv_endpoint}"
    timeout = config.rdzv_configs.get("join_timeout", _JOIN_TIMEOUT_DEFAULT)
    fix = "start every node with the same cluster description, or raise join_timeout"
    if isinstance(error, RendezvousTimeoutError):
        return f"{where} timed out: {nodes} nodes did not all join within {timeout} s; {fix}"
    if isinstance(error, RendezvousClosedError):  # another node gave up first, and closed it
        return (
            f"{where} was closed by another node before {nodes} nodes joined (it timed out after"
            f" {timeout} s, or stopped); {fix}"
        )
    return (
        f"{where} failed ({type(error).__name__}: {error or 'no detail'}); check that the chief"
        " node runs and that this node reaches it"
    )
