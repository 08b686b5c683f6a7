"""`bazel run //pkg:model.slurm -- --nodes=2 -- ARGS`: the binary as a SLURM batch job.

Parse, check, submit, follow, each its own module, as torchx splits a scheduler into a pure
request (`SlurmBatchRequest.materialize()`) and client calls (`schedule`, `describe`, `cancel`):

- `request`: the options before `--` (`parse`), the batch script (`Job.script`: one launcher per
  node, `srun --ntasks-per-node=1 --kill-on-bad-exit=1`, one output file per node rank, SIGUSR1
  before the time limit) and the environment sbatch hands the job; functions of data only.
- `checks`: before anything is queued, each bad value one line and exit 2: the binary's settings
  against the node count (`config.resolve`), file systems the nodes share (`shared_fs`), SLURM's
  commands on PATH, the partition's nodes and time limit.
- `client`: sbatch, scontrol and scancel, the only module that runs them.
- `follower`: the queue state on one line, the output of every node as it comes, the job's exit
  status; SIGINT, SIGTERM and SIGHUP cancel the job and wait until SLURM has ended every process
  of it.

`main` below is the `.slurm` target's entry and the only place that exits; the rest return or
raise.
"""

import os
import sys
from typing import NoReturn

from py_distributed.errors import exit_on_usage_error
from py_distributed.protocol import exit_code_of_signal
from py_distributed.submit.slurm import checks
from py_distributed.submit.slurm.client import Client
from py_distributed.submit.slurm.follower import Stop, cancel, follow
from py_distributed.submit.slurm.request import parse


def main(*, target: str, settings: str, shim: str) -> NoReturn:
    """Submits a py_distributed_binary as a SLURM job; the generated main of `target` (the .slurm
    target).

    Args:
      target: this submitter's label, for messages.
      settings: runfiles path of the binary's settings file, which holds its label (the job's
        name), stub and BUILD settings.
      shim: the generated main's own file, inside this submitter's runfiles tree.
    """
    with exit_on_usage_error(target):
        options = parse(sys.argv[1:], target)
        job, environ = checks.prepare(options, settings, shim, os.environ)
        if options.dry_run:
            sys.stdout.write(job.script())
            sys.exit(0)
        client = Client(environ)
        checks.check_with_slurm(options, job.nodes, environ, client)
    stop = Stop()
    with stop.installed():
        # Stop signals wait until sbatch answered: the job it queued is then cancelled.
        with exit_on_usage_error(target):
            os.makedirs(job.logs, exist_ok=True)
            job_id = client.submit(job.script())
        if stop.signum is not None:
            cancel(target, client, job_id)
            sys.exit(exit_code_of_signal(stop.signum))
        if not options.wait:
            print(job_id)
            print(
                f"{target}: job {job_id} queued; its output: {job.logs}/{job_id}.*", file=sys.stderr
            )
            sys.exit(0)
        sys.exit(follow(target, job, job_id, client, stop))
