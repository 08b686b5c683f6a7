"""The hand-off to torch elastic: torchrun's own parser and config, then its agent, in-process.

`prepare` decides (every bad input becomes a UsageError before any worker starts, and os.environ is
left as it was); `run` does, and turns the outcome into the exit status the job should have.
"""

import os
import sys
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch.distributed import run as torch_run
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous import RendezvousConnectionError, RendezvousError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from py_distributed.errors import UsageError, exit_code_of_worker
from py_distributed.launch import (
    console,
    environment,
    facilities,
    failures,
    first_failure,
    hangs,
    liveness,
    loopback,
    rounds,
    shutdown,
    signals,
)
from py_distributed.launch.entry import WorkerEntry
from py_distributed.launch.root_cause import Failure, Outcome, report
from py_distributed.launch.warm_start import CUDA_CHECK_WITHOUT_INIT
from py_distributed.launch.workers import Workers
from py_distributed.protocol import PROGRESS_ENV, WORKERS_DIR_ENV, exit_code_of_signal
from py_distributed.settings.config import TorchrunConfig
from py_distributed.settings.job_secret import JobSecret
from py_distributed.settings.node_address import IFNAME_VARIABLES


@dataclass(frozen=True)
class Launch:
    """A checked launch: torch elastic's configuration and what the workers get."""

    argv: list[str]  # torchrun's command line, printed when asked (console.VERBOSE_ENV)
    banner: str  # the line a person reads first
    weaker: list[str]  # what this torch lacks that the launch would use (`facilities.weaker`)
    shutdown_timeout: float  # seconds the others get after a failure (`shutdown.timeout`)
    config: LaunchConfig
    entrypoint: str | Callable[..., Any]
    entrypoint_args: list[str]
    environment: environment.Changes  # for the workers
    local_workers: int
    scratch: str  # the launch's temporary directory, which `prepare` was given
    hang_timeout: float  # seconds without a completed collective while ranks wait; 0: off
    secret: JobSecret | None  # signs a c10d rendezvous across nodes (`signed_state`)


# How long a failed multi-node launcher keeps its rendezvous store up for the other nodes.
_STORE_LINGER_SECONDS = 2

# torchrun flags that decide how workers start, which the launcher owns; torchrun would still take
# them from PET_* variables (PET_STANDALONE: a run id per worker, each launching again). The parser
# ignores those, the workers do not inherit them; PET_START_METHOD is a setting (`sources`).
_OWNED_PET_VARIABLES = (
    "PET_STANDALONE",
    "PET_MODULE",
    "PET_RUN_PATH",
    "PET_NO_PYTHON",
    "PET_START_METHOD",
)


def torchrun_argv(config: TorchrunConfig, known: Collection[str]) -> list[str]:
    """torchrun's flags, every setting explicit so that no stray PET_* variable can change it;
    `known` are the flags this torchrun has."""
    backend, endpoint, local_addr = config.rdzv_backend, config.rdzv_endpoint, config.local_addr
    if config.standalone:
        backend, endpoint, local_addr = loopback.BACKEND, f"{loopback.ADDRESS}:0", loopback.ADDRESS
    elif backend == rounds.REPLACES:
        backend = rounds.BACKEND
    nnodes = str(config.min_nodes)
    if config.max_nodes != config.min_nodes:
        nnodes += f":{config.max_nodes}"
    flags = [
        f"--nproc-per-node={config.nproc_per_node}",
        f"--nnodes={nnodes}",
        f"--max-restarts={config.max_restarts}",
        f"--rdzv-backend={backend}",
        f"--rdzv-endpoint={endpoint}",
        f"--rdzv-id={config.rdzv_id}",
    ]
    if config.rdzv_conf:
        flags.append(f"--rdzv-conf={config.rdzv_conf}")
    if local_addr:
        # Workers get MASTER_ADDR from this, not from the host name's address.
        flags.append(f"--local-addr={local_addr}")
    if config.node_rank is not None:
        flags.append(f"--node-rank={config.node_rank}")
    if (
        "--shutdown-timeout" in known
        and not shutdown.SHUTDOWN_TIMEOUT_VARIABLES & os.environ.keys()
    ):
        # Short for interactive use; the user's variable, or their --shutdown-timeout later on the
        # line, wins. One knob for both ways a job stops: a signal, a failed worker (`shutdown`).
        flags.append(f"--shutdown-timeout={shutdown.SHUTDOWN_TIMEOUT_DEFAULT}")
    return flags + list(config.torchrun_args)


def prepare(
    config: TorchrunConfig,
    entry: WorkerEntry,
    args: Sequence[str],
    worker_environment: environment.Changes,
    *,
    name: str,
    scratch: str,
    hang_timeout: float = 0,
    secret: JobSecret | None = None,
) -> Launch:
    """Checks the launch as torchrun would, raising UsageError instead of starting workers.

    `args` go to every worker's main, `worker_environment` into every worker's environment, with
    what torch itself would have written into os.environ for them: os.environ stays as it was.
    Worker output is teed through `scratch`, a directory that lives as long as the launch (torch
    would leave a /tmp/torchelastic_* directory behind per launch), unless the user chose a log
    directory, --tee or --redirects.
    """

    def usage_error(message: str) -> NoReturn:  # argparse would print usage and exit
        raise UsageError(f"torchrun: {message}")

    with environment.restored():  # torch's CUDA checks here must not initialise CUDA (warm_start)
        environment.apply(CUDA_CHECK_WITHOUT_INIT)
        # Counted once, through NVML as torch's own counts below.
        cuda = torch.cuda.device_count()
        try:
            with environment.restored():  # the parser reads PET_* variables, some with int()
                environment.apply(dict.fromkeys(_OWNED_PET_VARIABLES))
                parser = torch_run.get_args_parser()
            parser.allow_abbrev = False  # "--stand" must not pass for --standalone
            parser.error = usage_error  # type: ignore[method-assign]
            flags = parser._option_string_actions.keys()  # what this torchrun has
            argv = torchrun_argv(config, flags)
            # The user's arguments are not parsed: argparse would drop a leading "--" from them.
            parsed = parser.parse_args([*argv, *entry.torchrun_entry()])
            if parsed.log_dir:
                _check_writable(parsed.log_dir)
            if config.nproc_per_node == "gpu" and not cuda:
                # torchrun would only say "Cuda is not available."
                raise UsageError(
                    "nproc_per_node='gpu': no CUDA device is visible; use an int or cpu"
                )
            teed = parsed.tee == parsed.redirects == "0"
            if teed:  # every worker line to the console, with its rank (torchrun's --tee=3)
                parsed.tee, parsed.log_dir = "3", parsed.log_dir or os.path.join(scratch, "logs")
            local_workers = torch_run.determine_local_world_size(parsed.nproc_per_node)
            threads = os.environ.get("OMP_NUM_THREADS") or ""
            with environment.captured() as written_by_torch:
                if not threads:  # torchrun would set 1 and warn in four lines
                    threads = str(max(1, console.cpus() // local_workers))
                    environment.apply({"OMP_NUM_THREADS": threads})
                launch_config, entrypoint, entrypoint_args = torch_run.config_from_args(parsed)
            shutdown_timeout = shutdown.timeout(launch_config)
        except ValueError as error:  # torchrun's own checks of its flags and PET_* variables
            raise UsageError(f"torchrun: {error}") from None
    # torch 2.15's --log-line-prefix-template, where the user gave it, wins as in torchrun.
    users = os.environ.get(console.PREFIX_TEMPLATE_ENV) or vars(parsed).get(
        "log_line_prefix_template"
    )
    if not users:
        launch_config.log_line_prefix_template = console.line_prefix(config)

    workers: dict[str, str | None] = {
        **written_by_torch,
        # Teed output goes to a file, which Python would block-buffer: torchrun's `python -u`.
        **({"PYTHONUNBUFFERED": "1"} if teed and "PYTHONUNBUFFERED" not in os.environ else {}),
        **entry.environment(),
        **dict.fromkeys(_OWNED_PET_VARIABLES),
        **worker_environment,
    }
    if hang_timeout:
        workers[PROGRESS_ENV] = str(hangs.interval(hang_timeout))
    ifname = loopback.INTERFACE if config.standalone else config.socket_ifname
    if ifname:
        # gloo and NCCL otherwise use the host name's address, loopback on many machines.
        workers.update({name: ifname for name in IFNAME_VARIABLES if name not in os.environ})
    # A forked worker calls the entry's function where torchrun's --run-path would call its own.
    entrypoint = entry.function() or entrypoint
    banner = console.Banner(
        name,
        local_workers,
        config,
        f"{cuda} GPU{'s' if cuda > 1 else ''} (nccl)" if cuda else "CPU (gloo)",
        os.environ.get("OMP_NUM_THREADS") or threads,
        "OMP_NUM_THREADS" not in os.environ,
    )
    return Launch(
        [*argv, *entry.torchrun_entry(), *args],
        banner.line(),
        facilities.weaker(flags, config, shutdown_timeout),
        shutdown_timeout,
        launch_config,
        entrypoint,
        [*entrypoint_args, *args],
        workers,
        local_workers,
        scratch,
        hang_timeout,
        secret,
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


def run(launch: Launch, *, name: str) -> Outcome:
    """Starts the workers through torch elastic and returns how the job ended.

    Its exit status is 0, the exit code of the first failed worker (torchrun itself only says 1),
    or 128+N when a worker or the launcher was ended by signal N. torch elastic owns the signals:
    SIGTERM, SIGINT, SIGHUP and SIGQUIT stop every worker (grace period, then SIGKILL), which
    matters because `bazel run` does not forward Ctrl-C to the binary's children (bazel#3519).
    Call it inside `environment.restored()`: the workers' variables go into os.environ, where
    torch elastic copies them from.
    """
    loopback.register()
    rounds.register(name, launch.secret)
    print(launch.banner, file=sys.stderr, flush=True)
    for line in launch.weaker:
        print(f"{name}: {line}", file=sys.stderr, flush=True)
    if console.verbose(os.environ):
        print(console.command_line(name, launch.argv), file=sys.stderr, flush=True)
    kept = launch.config.logs_specs.root_log_dir if launch.config.logs_specs else ""

    def outcome(exit_code: int, failed: Sequence[Failure] = ()) -> Outcome:
        return Outcome(exit_code, launch.local_workers, failed, kept)

    try:
        with Workers() as workers:
            environment.apply({**launch.environment, WORKERS_DIR_ENV: workers.directory})
            leftovers = (workers.directory, launch.scratch)
            watch = liveness.Watch(workers, launch.local_workers, name=name, leftovers=leftovers)
            hung = hangs.Watch(workers, launch.hang_timeout, name=name)
            with (
                liveness.watching(watch),
                hung,
                shutdown.bounded(workers, launch.shutdown_timeout, name=name),
                signals.handled(launch.config, workers, name=name, stopping=watch.close) as config,
                console.torch_elastic_log(os.environ),
            ):
                elastic_launch(config, launch.entrypoint)(*launch.entrypoint_args)
    except ChildFailedError as failed:
        # The one place a worker's failure is shown: the first to end, across nodes, is the root
        # cause (`root_cause`, `first_failure`).
        ordered = failures.collected(failed, workers)
        if hung.found:  # its report is shown
            return outcome(hangs.EXIT_HANG, ordered)
        mine = watch.mine(ordered[0])
        first = watch.first(mine, launch.shutdown_timeout + first_failure.WAIT_SECONDS)
        if first == mine:
            print(report(name, ordered), file=sys.stderr)
            return outcome(exit_code_of_worker(ordered[0].exitcode), ordered)
        elsewhere = first.what
        if first.time_ns < mine.time_ns:
            ahead = f"{(mine.time_ns - first.time_ns) / 1e6:.1f} ms"
            elsewhere += f" (the first failure across nodes, {ahead} before this node's)"
        print(report(name, ordered, elsewhere), file=sys.stderr)
        return outcome(first.exit_code, ordered)
    except RendezvousError as error:
        # A store that closed its connection mid-job: its host is lost; a round that never formed
        # after the watch found a node lost: that node (`liveness`).
        closed = watch.store_lost() if isinstance(error, RendezvousConnectionError) else ""
        if lost := watch.lost() or closed:
            print(f"{name}: root cause: {lost}", file=sys.stderr)
        if not closed:
            print(f"{name}: error: {failures.rendezvous(launch.config, error)}", file=sys.stderr)
        if launch.config.max_nodes > 1:
            # The node hosting the store has just closed the rendezvous in it. Nodes still waiting
            # poll it every second: keep it up so they read "closed", not "connection refused".
            time.sleep(_STORE_LINGER_SECONDS)
        return outcome(1)
    except SignalException as stopped:
        print(f"{name}: stopped by {stopped.sigval.name}; workers stopped", file=sys.stderr)
        return outcome(exit_code_of_signal(stopped.sigval))
    return outcome(0)
