"""SLURM's client commands, the only place the submitter runs them: sbatch, scontrol, scancel.

Each call is one command whose answer comes back as data (a job id, scontrol's KEY=VALUE fields),
as torchx's scheduler calls (`schedule`, `describe`, `cancel`) do; what to make of an answer is
the caller's. A refusal before anything is queued is a UsageError, one line with SLURM's reason.
"""

import re
import subprocess
from collections.abc import Mapping, Sequence

from py_distributed.errors import UsageError

_FIELD = re.compile(r"(?:^|\s)(\w+)=(\S*)")


class Client:
    """SLURM's commands, run with the environment the job is submitted with (`SLURM_CONF`, the
    SBATCH_* defaults, the PATH that holds them)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)

    def submit(self, script: str) -> str:
        """Queues the batch script (`sbatch --parsable`); the job's id."""
        done = self._run(["sbatch", "--parsable"], stdin=script)
        if done.returncode != 0:
            raise UsageError(f"sbatch refused the job: {_last_line(done)}")
        return done.stdout.strip().split(";")[0]  # --parsable: ID, or ID;CLUSTER

    def partitions(self) -> dict[str, dict[str, str]]:
        """scontrol's fields of every partition, by name."""
        done = self._run(["scontrol", "--all", "--oneliner", "show", "partition"])
        if done.returncode != 0:
            raise UsageError(
                f"scontrol show partition: {_last_line(done)}; is slurmctld reachable?"
            )
        return {p["PartitionName"]: p for p in map(_fields, done.stdout.splitlines()) if p}

    def job(self, job_id: str) -> dict[str, str] | None:
        """scontrol's fields of the job; None if it did not answer (slurmctld busy: asked again)."""
        done = self._run(["scontrol", "--oneliner", "show", "job", job_id])
        return _fields(done.stdout) if done.returncode == 0 else None

    def cancel(self, job_id: str) -> str | None:
        """Cancels the job (`scancel`); why scancel failed, None if it did not."""
        done = self._run(["scancel", job_id])
        return _last_line(done) if done.returncode != 0 else None

    def _run(
        self, argv: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        # A session of its own: the terminal's Ctrl-C is the submitter's to handle, not sbatch's.
        return subprocess.run(
            argv,
            input=stdin,
            env=self.environ,
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
        )


def _fields(line: str) -> dict[str, str]:
    return dict(_FIELD.findall(line))


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"
