"""What is submitted: the submitter's options and the batch request, functions of data only.

Nothing here asks SLURM or the file systems (bar `os.path.realpath` of PYTHONPATH entries): the
options' grammar (`parse`, `time_seconds`), the batch script (`Job.script`) and the environment
sbatch hands the job (`job_environment`), so that `--dry-run` prints exactly what would be queued.
As torchx's `SlurmBatchRequest.materialize()`: the request is data, the client submits it.
"""

import argparse
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from py_distributed import grammar
from py_distributed.errors import UsageError
from py_distributed.settings.job_secret import FILE_ENV, VALUE_ENV

# SLURM sends SIGUSR1 this long before the time limit (`--signal=USR1@120`) to every process of the
# job step, the workers included: time for a checkpoint. SLURM may send it up to a minute earlier.
SIGNAL_LEAD_SECONDS = 120
_TIME_FIX = (
    "use MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or"
    " DAYS-HOURS:MINUTES:SECONDS"
)
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_PARTITION = re.compile(r"[A-Za-z0-9_.-]+")
# What the Bazel stub and `bazel run` set for the submitter itself, not for the job's launchers,
# which find their own runfiles (rules_python#3187: a child misled by its parent's).
_SUBMITTER_ONLY = ("RUNFILES_DIR", "RUNFILES_MANIFEST_FILE", "JAVA_RUNFILES")


@dataclass(frozen=True)
class Options:
    """The submitter's command line."""

    nodes: int | None  # None: from nnodes
    partition: str  # "": SBATCH_PARTITION, else the cluster's default
    time: str  # "": SBATCH_TIMELIMIT, else the partition's default
    shared_fs: tuple[str, ...]
    dry_run: bool
    wait: bool
    args: tuple[str, ...]  # the binary's


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fix = "; put the binary's arguments after `--`" if "unrecognized" in message else ""
        raise UsageError(f"{message}{fix} (see --help)")


def parse(argv: Sequence[str], prog: str) -> Options:
    """The options before the first `--`; the binary's arguments after it."""
    ours, binary_args = list(argv), []
    if "--" in ours:
        split = ours.index("--")
        ours, binary_args = ours[:split], ours[split + 1 :]
    parser = _Parser(
        prog=f"bazel run {prog} --",
        description="Submits the binary to SLURM as a batch job of one launcher per node.",
        epilog="The binary's own arguments follow a second `--`.",
    )
    parser.add_argument("--nodes", metavar="N", help="nodes. Default: the binary's nnodes, else 1")
    parser.add_argument("--partition", metavar="P", default="", help="Default: the cluster's")
    parser.add_argument("--time", metavar="T", default="", help="time limit, as sbatch takes it")
    parser.add_argument(
        "--shared-fs",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory every node mounts at this path, though its file system looks local here",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the batch script, submit none"
    )
    parser.add_argument("--no-wait", action="store_true", help="print the job id and return")
    parsed = parser.parse_args(ours)
    nodes = None
    if parsed.nodes is not None:
        if not (grammar.is_number(parsed.nodes) and int(parsed.nodes) > 0):
            raise UsageError(f"--nodes={parsed.nodes!r}: use an int >= 1")
        nodes = int(parsed.nodes)
    if parsed.partition and not all(_PARTITION.fullmatch(p) for p in parsed.partition.split(",")):
        raise UsageError(f"--partition={parsed.partition!r}: use a partition name, or NAME,NAME")
    if parsed.time:
        time_seconds(parsed.time, "--time")
    return Options(
        nodes=nodes,
        partition=parsed.partition,
        time=parsed.time,
        shared_fs=tuple(parsed.shared_fs),
        dry_run=parsed.dry_run,
        wait=not parsed.no_wait,
        args=tuple(binary_args),
    )


def time_seconds(text: str, source: str) -> int | None:
    """A SLURM time limit in seconds; None for none (UNLIMITED, INFINITE, 0)."""
    if text.upper() in {"UNLIMITED", "INFINITE"}:
        return None
    match = _TIME.fullmatch(text)
    if not match:
        raise UsageError(f"{source}={text!r}: {_TIME_FIX}")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if days is not None:  # DAYS-HOURS[:MINUTES[:SECONDS]]
        seconds = ((days * 24 + (first or 0)) * 60 + (second or 0)) * 60 + (third or 0)
    elif third is not None:  # HOURS:MINUTES:SECONDS
        seconds = ((first or 0) * 60 + (second or 0)) * 60 + third
    else:  # MINUTES[:SECONDS]
        seconds = (first or 0) * 60 + (second or 0)
    return seconds or None


@dataclass(frozen=True)
class Job:
    """What the batch script says: the binary, where it runs from, and the allocation."""

    binary: str  # the binary's label: the job's name
    stub: str  # the binary's executable inside the runfiles tree the nodes share
    args: tuple[str, ...]
    nodes: int
    partition: str
    time: str
    workdir: str  # the job's working directory: where the user ran `bazel run`
    logs: str  # the job's output files

    def script(self) -> str:
        """The batch script. Each node's launcher runs under a bash that records its exit code
        and time: SLURM stops the other launchers when one fails (--kill-on-bad-exit), and srun
        would report their 128+SIGTERM rather than the code of the one that ended first, which
        is the code of the first failure across nodes (`launch.first_failure`)."""
        optional = [("partition", self.partition), ("time", self.time)]
        directives = [
            f"--job-name={self.binary}",
            f"--nodes={self.nodes}",
            "--ntasks-per-node=1",
            "--exclusive",
            *(f"--{key}={value}" for key, value in optional if value),
            f"--signal=USR1@{SIGNAL_LEAD_SECONDS}",
            f"--chdir={self.workdir}",
            f"--output={self.logs}/%j.out",
        ]
        launch = " ".join(shlex.quote(a) for a in (self.stub, *self.args))
        # The bash around each launcher waits for it whatever SLURM signals (SLURM signals every
        # process of the step, the launcher and its workers as well), then writes its record.
        record = (
            'trap : INT TERM HUP USR1 USR2; "$@"; code=$?;'
            ' echo "$(date +%s.%N) $code $SLURM_NODEID" > "$0.node$SLURM_NODEID.exit"; exit $code'
        )
        return "\n".join(
            [
                "#!/bin/bash",
                f"# {self.binary} on {self.nodes} nodes: one launcher per node, which starts the",
                "# binary's workers there. Node rank K's output: %j.nodeK.out beside %j.out.",
                *(f"#SBATCH {d}" for d in directives),
                "",
                "export PYTHONUNBUFFERED=${PYTHONUNBUFFERED:-1}",
                f"exits={shlex.quote(self.logs)}/$SLURM_JOB_ID",
                "# The job's secret, which signs its rendezvous (docs/security.md): this run's,",
                "# its user's alone, on the file system the nodes share; gone when the job ends.",
                f'if [ -z "${{{FILE_ENV}:-}}${{{VALUE_ENV}:-}}" ]; then',
                f'  export {FILE_ENV}="$exits.secret"',
                "  (umask 077; head -c 32 /dev/urandom | od -An -vtx1 | tr -d ' \\n'"
                ' >"$exits.secret")',
                "  trap 'rm -f \"$exits.secret\"' EXIT",
                "fi",
                "srun --ntasks-per-node=1 --kill-on-bad-exit=1"
                f" --output={shlex.quote(self.logs)}/%j.node%t.out \\",
                f'  bash -c {shlex.quote(record)} "$exits" \\',
                f"  {launch}",
                "code=$?",
                "# The first launcher to fail gives the job its status: the others were stopped.",
                'read -r node first < <(sort -n "$exits".node*.exit 2>/dev/null'
                " | awk '$2 != 0 {print $3, $2; exit}')",
                'rm -f "$exits".node*.exit',
                'if [ -n "${first:-}" ]; then',
                "  # Every launcher names the first failure across nodes: the first to end, too.",
                '  grep -m1 -h ": root cause: " "$exits.node$node.out"',
                f'  echo "{self.binary}: node rank $node ended first, with exit code $first"',
                '  exit "$first"',
                "fi",
                'exit "$code"',
                "",
            ]
        )

    def output_files(self, job_id: str) -> list[str]:
        """The files the script has SLURM write for job `job_id`: the batch script's own output
        (%j.out), then node rank K's (%j.nodeK.out)."""
        nodes = [f"{self.logs}/{job_id}.node{rank}.out" for rank in range(self.nodes)]
        return [f"{self.logs}/{job_id}.out", *nodes]


def job_environment(environ: Mapping[str, str], tree: str, options: Options) -> dict[str, str]:
    """The environment sbatch hands the job (its default, --export=ALL): the submitter's, less
    what its own stub and allocation set, less SBATCH_* defaults the options replace."""
    env = {k: v for k, v in environ.items() if k not in _SUBMITTER_ONLY}
    # Allocation variables (an salloc shell's) would describe another job to srun in this one.
    env = {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    inside = tree.rstrip("/") + "/"
    python_path = [
        entry
        for entry in env.get("PYTHONPATH", "").split(":")
        if entry and not os.path.realpath(entry).startswith(inside)
    ]
    env.pop("PYTHONPATH", None)
    if python_path:
        env["PYTHONPATH"] = ":".join(python_path)
    for option, variable in (
        (options.partition, "SBATCH_PARTITION"),
        (options.time, "SBATCH_TIMELIMIT"),
    ):
        if option:
            env.pop(variable, None)  # sbatch would prefer it to the script's directive
    return env
