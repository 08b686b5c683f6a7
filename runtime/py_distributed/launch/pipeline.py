"""The launch pipeline: one function, `launch`, that every way of starting a job calls (a
py_distributed_binary's main, `maybe_run_training`), as torch/distributed/run.py's `run(args)`
is torchrun's.

It configures (the torchrun settings for this node), claims the GPUs the node's ranks need
(`gpu_claim`, held until the job ends), chooses how workers start (which locates the binary's
runfiles, and starts the forkserver of that start method), prepares (torchrun's own checks) and
runs torch elastic. Every bad input is one
line and EXIT_USAGE before any worker starts, and os.environ is as it was when `launch` returns.
torch is imported only once the cheap checks have passed, so that they answer at once.
"""

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from py_distributed.cluster import Cluster, machine_from_env
from py_distributed.errors import EXIT_USAGE, UsageError, print_usage_error
from py_distributed.launch import environment, facilities, gpu_claim, warm_start
from py_distributed.launch.entry import WorkerEntry
from py_distributed.launch.root_cause import Outcome
from py_distributed.protocol import LAUNCHER_PID_ENV, RUN_ID_ENV
from py_distributed.settings import checks, config, job_secret, node_address


@dataclass(frozen=True)
class Job:
    """A launch as its caller describes it."""

    name: str  # for messages: the target's label, or the module
    explicit: Mapping[str, str]  # torchrun settings from BUILD or arguments; PET_* win over them
    explicit_source: str  # "BUILD", "maybe_run_training"
    worker_entry: Callable[[], WorkerEntry]  # how workers start; may raise UsageError
    args: Sequence[str] = ()  # every worker's arguments
    torchrun_args: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)  # more for the workers
    cluster: Cluster | None = None  # None: read from the environment
    hang_timeout: str = ""  # seconds, from BUILD (`checks.hang_timeout`); "" unset
    gpus: int = 0  # GPUs this node claims, from BUILD (`settings.gpus`); PY_DISTRIBUTED_GPUS wins
    gpu_wait: str = ""  # seconds to wait for them where PY_DISTRIBUTED_GPU_WAIT is unset; "": 1 h


def launch(job: Job, *, observe: Callable[[Outcome], None] | None = None) -> int:
    """Runs `job` and returns its exit status: 0, the failed rank's code, 128+N for signal N, or
    EXIT_USAGE for a bad input (its one line printed), found before any worker started.

    `observe` is called with the outcome before the launch's temporary files are removed.
    """
    observe = observe or (lambda _: None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(environment.restored())
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="py_distributed-"))
        try:
            refuse_foreign_worker(os.environ)
            facilities.check_minimum()
            cluster = job.cluster or machine_from_env(os.environ)
            resolved = config.resolve(
                job.explicit, job.explicit_source, job.torchrun_args, os.environ, cluster
            )
            pinned = node_address.pinned(resolved, cluster, os.environ)
            hang = checks.hang_timeout(job.hang_timeout, job.explicit_source, os.environ)
            secret = job_secret.read(os.environ)
            # Before the forkserver starts and torch counts devices: both see the claimed GPUs.
            torchrun_config = stack.enter_context(
                gpu_claim.held(
                    pinned, str(job.gpus), job.explicit_source, job.gpu_wait, name=job.name
                )
            )
            method = torchrun_config.start_method
            entry = warm_start.chosen(method, job.worker_entry(), name=job.name)
            stack.enter_context(warm_start.served(entry))  # before torch: both import it at once
            from py_distributed.launch import torchrun

            markers = {RUN_ID_ENV: torchrun_config.rdzv_id, LAUNCHER_PID_ENV: str(os.getpid())}
            hidden = dict.fromkeys(job_secret.VARIABLES)  # the workers need no secret
            prepared = torchrun.prepare(
                torchrun_config,
                entry,
                job.args,
                {**job.environment, **markers, **hidden},
                name=job.name,
                scratch=scratch,
                hang_timeout=hang,
                secret=secret,
            )
        except UsageError as error:
            print_usage_error(job.name, error)
            observe(Outcome(EXIT_USAGE))
            return EXIT_USAGE
        outcome = torchrun.run(prepared, name=job.name)
        observe(outcome)
        return outcome.exit_code


def is_foreign_worker(environ: Mapping[str, str]) -> bool:
    """True in a worker of a torchrun other than the launcher whose marker it carries.

    Launching again there would nest one job per worker, at every level.
    """
    run_id = environ.get(RUN_ID_ENV, "")
    return bool(run_id) and environ.get("TORCHELASTIC_RUN_ID", run_id) != run_id


def refuse_foreign_worker(environ: Mapping[str, str]) -> None:
    """Raises UsageError in a worker of a launch other than the one whose marker it carries."""
    if is_foreign_worker(environ):
        raise UsageError(
            f"{RUN_ID_ENV} and TORCHELASTIC_RUN_ID disagree: this is a worker of another"
            " launch; start the binary outside it, or unset both"
        )
