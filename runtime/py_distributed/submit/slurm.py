"""`bazel run //pkg:model.slurm -- --nodes=2 -- ARGS`: the binary as a SLURM batch job.

Parse, check, do, as the launcher does:

1. Options (`parse`): the submitter's before `--`, the binary's arguments after it.
2. Checks, before anything is queued, each bad value one line and exit 2: the options' grammar;
   the binary's torchrun settings and the job's environment (PET_*) against its node count, by
   `config.resolve`, the very check each node's launcher will make; the SLURM commands on PATH; the
   partition's node count and time limit (`scontrol show partition`); the runfiles tree and the
   working directory on file systems the nodes share (`shared_fs`).
3. The batch script (`Job.script`): one launcher per node (`srun --ntasks-per-node=1
   --kill-on-bad-exit=1`), one output file per node rank, SIGUSR1 before the time limit.
4. `sbatch --parsable`, then `follow`: the queue state on one line, the output of every node as it
   comes, the job's exit status; SIGINT, SIGTERM and SIGHUP cancel the job (`scancel`) and wait
   until SLURM has ended every process of it.
"""

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn, TextIO

from py_distributed import grammar
from py_distributed.cluster import Cluster, slurm
from py_distributed.errors import EXIT_USAGE, UsageError, exit_on_usage_error
from py_distributed.launch.runfiles_env import enclosing_runfiles_dir
from py_distributed.protocol import exit_code_of_signal
from py_distributed.settings import build, config
from py_distributed.submit import shared_fs

# SLURM sends SIGUSR1 this long before the time limit (`--signal=USR1@120`) to every process of the
# job step, the workers included: time for a checkpoint. SLURM may send it up to a minute earlier.
SIGNAL_LEAD_SECONDS = 120
# The submitter's own stop signals: each cancels the job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often the job is looked at while it waits in the queue, and while it runs.
_QUEUE_POLL_SECONDS = 1.0
_RUN_POLL_SECONDS = 0.25
# How long slurmctld may not answer for the job before the submitter gives up following it.
_UNANSWERED_SECONDS = 60
# Base states after which nothing of the job runs any more (scontrol shows COMPLETING until then).
_ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)
_TIME_FIX = (
    "use MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or"
    " DAYS-HOURS:MINUTES:SECONDS"
)
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")
_PARTITION = re.compile(r"[A-Za-z0-9_.-]+")
_FIELD = re.compile(r"(?:^|\s)(\w+)=(\S*)")
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
        would report their 128+SIGTERM rather than the code of the one that failed first."""
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
                f'  echo "{self.binary}: node rank $node failed first, with exit code $first"',
                '  exit "$first"',
                "fi",
                'exit "$code"',
                "",
            ]
        )


def main(*, target: str, settings: str, shim: str) -> NoReturn:
    """Submits a py_distributed_binary as a SLURM job; the generated main of `target` (the .slurm
    target).

    Args:
      target: this submitter's label, for messages.
      settings: runfiles path of the binary's settings file, which holds its label (the job's name),
        stub and BUILD settings.
      shim: the generated main's own file, inside this submitter's runfiles tree.
    """
    with exit_on_usage_error(target):
        options = parse(sys.argv[1:], target)
        job, environ = prepare(options, settings, shim, os.environ)
    if options.dry_run:
        sys.stdout.write(job.script())
        sys.exit(0)
    stop = _Stop()
    with stop.installed():
        job_id = _submit(target, job, environ, stop)
        if not options.wait:
            print(job_id)
            print(
                f"{target}: job {job_id} queued; its output: {job.logs}/{job_id}.*", file=sys.stderr
            )
            sys.exit(0)
        sys.exit(follow(target, job, job_id, environ, stop))


def prepare(
    options: Options,
    settings: str,
    shim: str,
    environ: Mapping[str, str],
) -> tuple[Job, dict[str, str]]:
    """The job and sbatch's environment, once every check passed; raises UsageError."""
    found_tree = enclosing_runfiles_dir(shim)
    if found_tree is None:
        raise UsageError(
            f"{shim} is in no runfiles tree, which the nodes need: build without"
            " --nobuild_runfile_links"
        )
    # Its real path: the nodes need not have the convenience links (bazel-bin) that lead to it.
    tree = os.path.realpath(found_tree)
    job_env = job_environment(environ, tree, options)
    binary = build.read(os.path.join(tree, settings))
    nodes = options.nodes or _nnodes_default(binary.values, job_env)
    try:
        # The check each node's launcher will make, with the node count SLURM will describe.
        config.resolve(binary.values, "BUILD", binary.torchrun_args, job_env, _described(nodes))
    except UsageError as error:
        raise UsageError(f"--nodes={nodes}: {error}") from None
    workdir = environ.get("BUILD_WORKING_DIRECTORY") or os.getcwd()
    if re.search(r"[\s%\\]", workdir):
        raise UsageError(
            f"working directory {workdir!r}: sbatch's file names cannot hold whitespace, '%' or"
            " '\\'; run from another directory"
        )
    logs = os.path.join(workdir, "slurm-" + binary.target.rpartition(":")[2].replace("/", "_"))
    paths = [*shared_fs.runfiles_paths(tree), workdir]
    found = shared_fs.unshared(paths, options.shared_fs, shared_fs.mounts())
    if found:
        path, mount = found
        raise UsageError(
            f"{path} is on {mount.fstype} mounted at {mount.point}, not a network file system:"
            " the nodes run the binary from its runfiles tree and write to the working directory;"
            " put both on a shared file system (bazel --output_user_root=DIR for the tree), or"
            f" pass --shared-fs={mount.point} if every node mounts it at this path"
        )
    if not options.dry_run:
        _check_commands(("sbatch", "scontrol") + (("scancel",) if options.wait else ()), job_env)
        _check_partition(options, nodes, job_env)
    stub_path = os.path.join(tree, binary.stub)
    job = Job(
        binary.target,
        stub_path,
        options.args,
        nodes,
        options.partition,
        options.time,
        workdir,
        logs,
    )
    return job, job_env


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


def _nnodes_default(build_values: Mapping[str, str], environ: Mapping[str, str]) -> int:
    """The most nodes the binary's nnodes allows (PET_NNODES, then BUILD), else 1."""
    given = config.given(build_values, "BUILD", environ, _described(1))
    try:
        return grammar.nnodes(given["nnodes"])[1]
    except ValueError as error:
        raise given.bad("nnodes", str(error)) from None


def _described(nodes: int) -> Cluster:
    """The cluster description each launcher of a job on `nodes` nodes will read, as seen by the
    first (any job id: it only picks the rendezvous port)."""
    step = {
        "SLURM_STEP_NODELIST": f"n[1-{nodes}]",
        "SLURM_STEP_NUM_NODES": str(nodes),
        "SLURM_STEP_ID": "0",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "1",
    }
    described = slurm.from_env(step)
    assert described is not None  # a node list is set
    return described


def _check_commands(commands: Sequence[str], environ: Mapping[str, str]) -> None:
    for command in commands:
        if shutil.which(command, path=environ.get("PATH")) is None:
            raise UsageError(
                f"{command} is not on PATH: submit from a host with SLURM's client commands"
                " (a login node)"
            )


def _check_partition(options: Options, nodes: int, environ: Mapping[str, str]) -> None:
    """The node count and time limit against what the partition allows; SLURM would otherwise
    queue the job for good (reason PartitionNodeLimit or PartitionTimeLimit)."""
    done = _run(["scontrol", "--all", "--oneliner", "show", "partition"], environ)
    if done.returncode != 0:
        raise UsageError(f"scontrol show partition: {_last_line(done)}; is slurmctld reachable?")
    partitions = {p["PartitionName"]: p for p in map(_fields, done.stdout.splitlines()) if p}
    names, source = options.partition, "--partition"
    if not names and environ.get("SBATCH_PARTITION"):
        names, source = environ["SBATCH_PARTITION"], "SBATCH_PARTITION"
    known = ", ".join(sorted(partitions)) or "none"
    if names:
        unknown = [n for n in names.split(",") if n not in partitions]
        if unknown:
            raise UsageError(f"{source}={names!r}: no partition {unknown[0]}; use one of {known}")
        chosen = [partitions[n] for n in names.split(",")]
    else:
        chosen = [p for p in partitions.values() if p.get("Default") == "YES"]
        if not chosen:
            raise UsageError(
                f"the cluster has no default partition: pass --partition, one of {known}"
            )
    limit = options.time or environ.get("SBATCH_TIMELIMIT", "")
    seconds = (
        time_seconds(limit, "--time" if options.time else "SBATCH_TIMELIMIT") if limit else None
    )
    problems = [_misfit(p, nodes, seconds) for p in chosen]
    if all(problems):
        raise UsageError(
            f"--nodes={nodes}" + (f" --time={limit}" if limit else "") + f": {problems[0]}"
        )


def _misfit(partition: Mapping[str, str], nodes: int, seconds: int | None) -> str:
    """Why a job of `nodes` nodes and `seconds` cannot run in `partition`; "" if it can."""
    name = partition["PartitionName"]
    total = int(partition.get("TotalNodes", "0"))
    if nodes > total:
        return f"partition {name} has {total} nodes; ask for at most {total}"
    most = partition.get("MaxNodes", "UNLIMITED")
    if grammar.is_number(most) and nodes > int(most):
        return f"partition {name} allows at most {most} nodes per job (MaxNodes)"
    allowed = partition.get("MaxTime", "UNLIMITED")
    allowed_seconds = time_seconds(allowed, f"MaxTime of {name}")
    if seconds is not None and allowed_seconds is not None and seconds > allowed_seconds:
        return f"partition {name} allows at most {allowed} (MaxTime)"
    return ""


def _submit(target: str, job: Job, environ: Mapping[str, str], stop: "_Stop") -> str:
    """Queues the job; its id. Stop signals wait until sbatch answered, then cancel it."""
    os.makedirs(job.logs, exist_ok=True)
    done = _run(["sbatch", "--parsable"], environ, stdin=job.script())
    if done.returncode != 0:
        print(f"{target}: error: sbatch refused the job: {_last_line(done)}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    job_id = done.stdout.strip().split(";")[0]
    if stop.signum is not None:
        _cancel(target, job_id, environ)
        sys.exit(exit_code_of_signal(stop.signum))
    return job_id


def follow(target: str, job: Job, job_id: str, environ: Mapping[str, str], stop: "_Stop") -> int:
    """Shows the job until it ends: one status line while it waits in the queue, then every
    node's output; its exit status. A stop signal cancels it and waits until SLURM ended it."""
    submitted = time.monotonic()
    status = _StatusLine(sys.stderr)
    tail = _Tail(
        [f"{job.logs}/{job_id}.out"]
        + [f"{job.logs}/{job_id}.node{rank}.out" for rank in range(job.nodes)]
    )
    cancelled_by: int | None = None
    answered = submitted
    while True:
        if stop.signum is not None and cancelled_by is None:
            cancelled_by = stop.signum
            status.finish()
            _cancel(target, job_id, environ)
        now = time.monotonic()
        state = _job_state(job_id, environ)
        if state is None:  # slurmctld busy, or restarting: asked again
            if now - answered > _UNANSWERED_SECONDS:
                print(f"{target}: error: slurmctld knows no job {job_id} any more; its output:"
                      f" {job.logs}/{job_id}.*", file=sys.stderr)  # fmt: skip
                return 1
            time.sleep(_QUEUE_POLL_SECONDS)
            continue
        answered = now
        base, elapsed = state.get("JobState", "UNKNOWN"), _clock(now - submitted)
        if base == "PENDING":
            reason = state.get("Reason", "None")
            status.show(f"{target}: job {job_id} {base} ({reason}), {elapsed} in the queue")
            time.sleep(_QUEUE_POLL_SECONDS)
            continue
        if not status.finished:
            where = state.get("NodeList", "(null)")
            where = "" if where == "(null)" else f" on {where}"
            status.show(f"{target}: job {job_id} {base}{where}, {elapsed} after submission")
            status.finish()
        tail.pump(sys.stdout)
        if base in _ENDED:
            tail.pump(sys.stdout, final=True)
            code = 0 if base == "COMPLETED" else _exit_status(state.get("ExitCode", "0:0"))
            if cancelled_by is not None:
                code = exit_code_of_signal(cancelled_by)
            print(
                f"{target}: job {job_id} {base} after {elapsed}: exit status {code}",
                file=sys.stderr,
            )
            return code
        time.sleep(_RUN_POLL_SECONDS)


def _exit_status(exit_code: str) -> int:
    """scontrol's ExitCode=CODE:SIGNAL of the batch script as one exit status."""
    code, _, sig = exit_code.partition(":")
    if grammar.is_number(code) and int(code):
        return int(code)
    if grammar.is_number(sig) and int(sig):
        return exit_code_of_signal(int(sig))
    return 1  # ended badly without a code of its own: NODE_FAIL, BOOT_FAIL, ...


def _job_state(job_id: str, environ: Mapping[str, str]) -> dict[str, str] | None:
    """scontrol's fields of the job; None if it did not answer (slurmctld busy: asked again)."""
    done = _run(["scontrol", "--oneliner", "show", "job", job_id], environ)
    return _fields(done.stdout) if done.returncode == 0 else None


def _cancel(target: str, job_id: str, environ: Mapping[str, str]) -> None:
    print(f"{target}: cancelling job {job_id} (scancel)", file=sys.stderr)
    done = _run(["scancel", job_id], environ)
    if done.returncode != 0:
        print(f"{target}: scancel {job_id}: {_last_line(done)}", file=sys.stderr)


def _run(
    argv: Sequence[str], environ: Mapping[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A session of its own: the terminal's Ctrl-C is the submitter's to handle, not sbatch's.
    return subprocess.run(
        argv,
        input=stdin,
        env=dict(environ),
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


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    return f"{minutes}:{second:02d}"


class _Stop:
    """The first stop signal the submitter got; a second one exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            os.write(2, b"not waiting for the job to end: it is being cancelled\n")
            os._exit(exit_code_of_signal(signum))
        self.signum = signum


@dataclass
class _StatusLine:
    """One line that changes in place on a terminal; on anything else, a line per change."""

    stream: TextIO
    shown: str | None = None
    finished: bool = False

    def show(self, text: str) -> None:
        if self.stream.isatty():
            self.stream.write(f"\r\x1b[K{text}")
        elif _without_clock(text) != _without_clock(self.shown or ""):
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = text

    def finish(self) -> None:
        if self.shown is not None and not self.finished and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
        self.finished = True


def _without_clock(text: str) -> str:
    return re.sub(r"\d+:\d\d", "", text)


class _Tail:
    """Writes out the lines files gain, each file from where it was left. Files are opened anew
    each time: on NFS an open is what brings another host's writes (close-to-open consistency)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._offsets = dict.fromkeys(paths, 0)

    def pump(self, out: TextIO, *, final: bool = False) -> None:
        for path, offset in self._offsets.items():
            with contextlib.suppress(FileNotFoundError):
                with open(path, "rb") as source:
                    source.seek(offset)
                    data = source.read()
                complete = data if final else data[: data.rfind(b"\n") + 1]
                if complete:
                    out.buffer.write(complete)
                    self._offsets[path] = offset + len(complete)
        out.flush()
