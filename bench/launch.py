"""Launch benchmark (issue 13): how long a one-all_reduce job takes from exec to its last exit.

From the repository root (the benchmark builds what it runs itself):

    tools/setup.sh python bench/launch.py           # the full run: 5 timed + 1 memory run per cell
    tools/setup.sh python bench/launch.py --quick   # one of each, while developing

(--runs, --memory-runs, --nproc 1,2 and --out DIR choose other counts, Ns and where to write.)
It runs bench/allreduce_once.py (join a gloo group, all-reduce once, exit) on N = 1, 2, 4, 8 local
CPU workers, started in each of these ways:

    torchrun     `torchrun --standalone --nproc-per-node N allreduce_once.py`, the baseline
    seed         the seed's launcher (bench/seed_launcher.py, a py_binary): imports torch, then
                 torchrun in a subprocess with PYTHONPATH from its sys.path
    spawn        the built binary bazel-bin/bench/allreduce_once, N from PET_NPROC_PER_NODE: the
                 default, workers re-enter the binary through its stub
    bazel run    the same through `bazel run //bench:allreduce_once`, to show Bazel's own share
    fork         the built binary with PET_START_METHOD=fork (warm start)
    forkserver   the built binary with PET_START_METHOD=forkserver
    floor        no launcher: python + import torch + a 1-rank group, the least any way can take;
                 the same whatever N, so run once per repetition and shown under every N

The binaries come from a Bazel server of the benchmark's own (its own output base, shut down at the
end), so that `bazel run` meets a warm server that no other command holds, and nothing rebuilds
them while they are timed.

Latency is wall time from just before exec until the root process has exited, taken with
time.perf_counter around subprocess, in runs where nothing else of the benchmark runs meanwhile.
Memory is the peak of the total PSS of the process tree (root and descendants, psutil's
memory_full_info), sampled every 15 ms plus the time one sweep takes, in separate runs: reading
one torch process's PSS costs about 10 ms of CPU on a small VM, so sampling would steal the CPU
the timed job needs. A sweep of 10 processes thus takes about 0.1 s, and a peak shorter than that
(8 forked workers live about that long) may be missed: the JSON keeps every sample. `bazel run`
has no memory runs: its client execs the binary, so its process tree is spawn's (Bazel's server is
no descendant, and is not counted).

The variants take turns run by run (round-robin within each repetition, the order rotated from one
to the next), so that drift of the machine hits them alike. Every run is checked: exit status 0,
one line from each rank with the right sum, workers started the way the variant says (a warm start
that fell back to spawn fails its run) and no process left behind once the root has exited. Failed
runs stay in the JSON and are counted in the tables; medians are over the runs that succeeded. The
memory runs come first, and fill the page cache before any run is timed; a variant whose first run
fails is one this checkout cannot run (a start method the runtime lacks), reported missing.

Writes bench/results/launch.json (every run, with its PSS samples), launch.md (the tables and the
verdict against issue 13's targets) and launch.png (latency and PSS against N). Exits 0 when every
run succeeded and every target passed, 1 otherwise.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "allreduce_once.py"
TORCHRUN = Path(sys.executable).with_name("torchrun")
TARGET = "//bench:allreduce_once"
# The benchmark's own Bazel server: other Bazel commands in the workspace (an editor's, a test
# run's) neither hold the lock that `bazel run` waits for nor rebuild its binaries while they are
# timed. It leaves the workspace's bazel-* links alone, and is shut down at the end.
OUTPUT_BASE = (
    Path.home() / ".cache" / "rules_py_distributed_bench" / sha256(bytes(ROOT)).hexdigest()[:16]
)
BAZEL = ("bazel", f"--output_base={OUTPUT_BASE}")
NO_LINKS = "--symlink_prefix=/"
NPROCS = (1, 2, 4, 8)
RUN_TIMEOUT_S = 300
SAMPLE_INTERVAL_S = 0.015
# How long processes of a run may outlive its root (a forkserver sees its launcher go) before they
# count as left behind.
LINGER_S = 2.0
MIB = 2**20

# What a developer's shell or a scheduler may hold that would change how the jobs start: cluster
# descriptions, torchrun's and the launcher's own variables, a worker's identity.
_FOREIGN_VARIABLE = re.compile(
    r"(PET|SLURM|TORCHELASTIC|PY_DISTRIBUTED)_.*|TF_CONFIG"
    r"|MASTER_(ADDR|PORT)|(LOCAL_)?RANK|WORLD_SIZE|(GLOO|NCCL)_SOCKET_IFNAME"
)
# Set in every run to a fresh value: the processes that carry it are that run's.
_RUN_MARKER = "LAUNCH_BENCH_RUN"
_RANK_LINE = re.compile(r"allreduce_once: rank (\d+) of (\d+): sum (\d+), started by ([\w-]+)")


@dataclass(frozen=True)
class Variant:
    """One way of starting the job with N workers."""

    name: str
    label: str
    started_by: str  # how its workers must report they started (allreduce_once.started_by)
    command: Callable[[int, Path], list[str]]  # N, Bazel's bin directory
    env: Callable[[int], dict[str, str]]
    ranks: Callable[[int], int] = lambda nproc: nproc
    per_n: bool = True  # False: the same job whatever N, run once per repetition, shown for each N
    sampled: bool = True  # False: its process tree is another variant's, so no memory runs


def _binary(_: int, bazel_bin: Path) -> list[str]:
    return [str(bazel_bin / "bench" / "allreduce_once")]


def _nproc_env(nproc: int) -> dict[str, str]:
    return {"PET_NPROC_PER_NODE": str(nproc)}


def _warm_env(method: str) -> Callable[[int], dict[str, str]]:
    return lambda nproc: {**_nproc_env(nproc), "PET_START_METHOD": method}


def _floor_env(_: int) -> dict[str, str]:
    """A world of one, as torchrun would describe it to its only worker."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


VARIANTS = (
    Variant(
        "torchrun",
        "torchrun --standalone (baseline)",
        "exec",
        lambda n, _: [str(TORCHRUN), "--standalone", f"--nproc-per-node={n}", str(SCRIPT)],
        lambda n: {},
    ),
    Variant(
        "seed",
        "seed's launcher",
        "exec",
        lambda n, bin: [str(bin / "bench/seed_launcher"), str(n)],
        lambda n: {},
    ),
    Variant("spawn", "bazel-bin, spawn (default)", "exec", _binary, _nproc_env),
    Variant(
        "bazel_run",
        "bazel run, spawn",
        "exec",
        lambda n, _: [*BAZEL, "run", NO_LINKS, TARGET],
        _nproc_env,
        sampled=False,  # the client execs the binary: its tree is spawn's
    ),
    Variant("fork", "bazel-bin, fork", "fork", _binary, _warm_env("fork")),
    Variant(
        "forkserver",
        "bazel-bin, forkserver",
        "forkserver",
        _binary,
        _warm_env("forkserver"),
    ),
    Variant(
        "floor",
        "floor: python + torch + 1-rank group",
        "exec",
        lambda n, _: [sys.executable, str(SCRIPT)],
        _floor_env,
        ranks=lambda n: 1,
        per_n=False,
    ),
)
PER_N = {v.name: v.per_n for v in VARIANTS}


@dataclass
class Run:
    """One run of one variant, as the JSON keeps it."""

    variant: str
    nproc: int
    kind: str  # "time" or "memory"
    repetition: int
    seconds: float
    ok: bool
    problem: str = ""  # why the run failed; "" when it succeeded
    peak_pss_mib: float | None = None  # memory runs
    pss_samples: list[tuple[float, float]] = field(default_factory=list)  # (s since exec, MiB)
    output_tail: str = ""  # the run's output, when it failed


@dataclass(frozen=True)
class Setup:
    """What every run needs: the environment it starts from and the built binaries."""

    env: dict[str, str]
    bazel_bin: Path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Stopped with SIGTERM too, the benchmark kills the job it runs and shuts its Bazel server down.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    began = time.perf_counter()
    env = clean_environment(os.environ)
    meta = machine_description(args, argv)
    try:
        setup = build(env)
        meta["build_seconds"] = round(time.perf_counter() - began, 1)
        missing, runs = measure(args, setup)
    finally:
        bazel(env, "shutdown")
    meta["wall_seconds"] = round(time.perf_counter() - began, 1)
    meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    table = Table(runs, args.nproc, missing)
    verdict = table.verdict()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": meta,
        "missing": missing,
        "medians": table.medians(),
        "verdict": verdict,
        "runs": [asdict(r) for r in runs],
    }
    (args.out / "launch.json").write_text(as_json(report))
    markdown = table.markdown(meta, verdict)
    (args.out / "launch.md").write_text(markdown)
    plot(table, meta, args.out / "launch.png")
    print(markdown)
    say(f"wrote {args.out}/launch.json, launch.md, launch.png in {meta['wall_seconds']} s")
    failed_runs = any(not r.ok for r in runs)
    return 0 if not failed_runs and all(line.startswith("PASS") for line in verdict) else 1


def measure(args: argparse.Namespace, setup: Setup) -> tuple[dict[str, str], list[Run]]:
    """Every repetition, a memory one first; returns the missing variants (with why) and every run.

    The first run of each variant also finds out whether this checkout can run it at all (a start
    method the runtime lacks): one that fails there is reported missing and not run again.
    """
    runs: list[Run] = []
    missing: dict[str, str] = {}
    kinds = schedule(args.runs, args.memory_runs)
    began = time.monotonic()
    for repetition, kind in enumerate(kinds):
        count = f"{kinds[: repetition + 1].count(kind)} of {kinds.count(kind)}"
        for index, nproc in enumerate(args.nproc):
            here = [
                v
                for v in VARIANTS
                if v.name not in missing
                and (v.per_n or index == 0)
                and (v.sampled or kind != "memory")
            ]
            turn = (repetition + index) % len(here)
            order = here[turn:] + here[:turn]
            done = []
            for variant in order:
                run = run_once(variant, nproc, kind, repetition, setup)
                done.append(run)
                if not run.ok and not any(r.variant == variant.name for r in runs):
                    missing[variant.name] = run.problem
            if "torchrun" in missing:
                sys.exit(f"bench: the baseline, torchrun, fails: {missing['torchrun']}")
            runs += done
            summary = ", ".join(f"{r.variant} {describe(r)}" for r in done)
            say(f"{kind} run {count}, N={nproc}: {summary}")
        spent = time.monotonic() - began
        left = spent / (repetition + 1) * (len(kinds) - repetition - 1)
        say(f"{spent:.0f} s of runs so far, about {left:.0f} s to go")
    return missing, runs


def as_json(report: dict[str, Any]) -> str:
    """`report` as JSON, one line for each of its runs."""
    head = json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=1)
    runs = ",\n".join(f"  {json.dumps(run)}" for run in report["runs"])
    return f'{head[:-2]},\n "runs": [\n{runs}\n ]\n}}\n'


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each variant and N")
    parser.add_argument(
        "--memory-runs", type=int, default=1, help="runs of each variant and N that sample PSS"
    )
    parser.add_argument(
        "--nproc", type=_nproc_list, default=NPROCS, help="the Ns, comma-separated (1,2,4,8)"
    )
    parser.add_argument("--quick", action="store_true", help="one timed and one memory run each")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = args.memory_runs = 1
    if args.runs < 1 or args.memory_runs < 1:
        parser.error(f"--runs={args.runs} --memory-runs={args.memory_runs}: use 1 or more")
    return args


def _nproc_list(text: str) -> tuple[int, ...]:
    values = tuple(int(n) for n in text.split(","))
    if not all(1 <= n <= 64 for n in values):
        raise argparse.ArgumentTypeError(f"{text!r}: use workers per node in 1..64, like 1,2,4,8")
    return values


def schedule(runs: int, memory_runs: int) -> list[str]:
    """The kinds of the repetitions: memory and timed ones alternate while both last, a memory one
    first, whose runs fill the page cache before any run is timed."""
    kinds: list[str] = []
    for index in range(max(runs, memory_runs)):
        kinds += ["memory"] * (index < memory_runs) + ["time"] * (index < runs)
    return kinds


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not _FOREIGN_VARIABLE.fullmatch(k)}


def machine_description(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, object]:
    model = next(
        (line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "torch": importlib.metadata.version("torch"),
        "runs": args.runs,
        "memory_runs": args.memory_runs,
        "nproc": list(args.nproc),
        "command": " ".join(["python", "bench/launch.py", *(argv or sys.argv[1:])]),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def _read(path: str) -> list[str]:
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as f:
        return f.read().splitlines()
    return []


def build(env: dict[str, str]) -> Setup:
    """Builds //bench:all with the benchmark's own Bazel server, kept warm for `bazel run`."""
    if not TORCHRUN.exists():
        sys.exit(f"bench: no {TORCHRUN}: run the benchmark as `tools/setup.sh python {__file__}`")
    say(f"bazel build //bench:all (output base {OUTPUT_BASE})")
    bazel(env, "build", NO_LINKS, "//bench:all")
    return Setup(env, Path(bazel(env, "info", "bazel-bin").strip()))


def bazel(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [*BAZEL, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"bench: bazel {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def run_once(variant: Variant, nproc: int, kind: str, repetition: int, setup: Setup) -> Run:
    """Runs `variant` with `nproc` workers once and checks it did the job."""
    marker = uuid.uuid4().hex
    command = variant.command(nproc, setup.bazel_bin)
    run_env = {**setup.env, **variant.env(nproc), _RUN_MARKER: marker}
    problem = ""
    pss: list[tuple[float, float]] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as output:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=run_env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            if kind == "memory":
                pss = sample_pss(proc, start)
            code = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            problem = f"timed out after {RUN_TIMEOUT_S} s"
        finally:  # also when the benchmark itself is stopped
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            seconds = time.perf_counter() - start
            left = left_behind(marker)  # torch elastic's workers have sessions of their own
        output.seek(0)
        text = output.read()
    problem = problem or check_output(variant, nproc, code, text) or left
    return Run(
        variant=variant.name,
        nproc=nproc,
        kind=kind,
        repetition=repetition,
        seconds=round(seconds, 4),
        ok=not problem,
        problem=problem,
        peak_pss_mib=round(max(m for _, m in pss), 1) if pss else None,
        pss_samples=pss,
        output_tail=text[-3000:] if problem else "",
    )


def sample_pss(proc: subprocess.Popen[bytes], start: float) -> list[tuple[float, float]]:
    """The total PSS of `proc` and its descendants, in MiB, from now until `proc` exits."""
    samples: list[tuple[float, float]] = []
    try:
        root = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:
        return samples
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:  # the root is gone
            break
        total = 0
        for process in tree:
            with contextlib.suppress(psutil.Error):  # it exited meanwhile
                total += process.memory_full_info().pss
        samples.append((round(time.perf_counter() - start, 3), round(total / MIB, 1)))
        time.sleep(SAMPLE_INTERVAL_S)
    return samples


def left_behind(marker: str) -> str:
    """Kills the processes of the run that carries `marker` that outlive it by LINGER_S; says
    which they were, or "" when there were none."""
    deadline = time.monotonic() + LINGER_S
    while True:
        alive = [p for p in psutil.process_iter() if _carries(p, marker)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = []
    for process in alive:
        with contextlib.suppress(psutil.Error):
            names.append(f"{process.pid} {' '.join(process.cmdline())[:80]}")
            process.kill()
    return f"left {len(alive)} processes behind: {'; '.join(names)}" if alive else ""


def _carries(process: psutil.Process, marker: str) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE and (
            process.environ().get(_RUN_MARKER) == marker
        )
    except psutil.Error:
        return False


def check_output(variant: Variant, nproc: int, code: int, text: str) -> str:
    """Why the run did not do the job, or "" when it did: exit status 0, and one line from each
    rank with the world size as its sum, started the way the variant says."""
    if code != 0:
        last = text.strip().splitlines()[-1:] or ["no output"]
        return f"exit status {code}: {last[0][:200]}"
    ranks = variant.ranks(nproc)
    lines = [m.groups() for m in _RANK_LINE.finditer(text)]
    seen = sorted(int(rank) for rank, *_ in lines)
    if seen != list(range(ranks)):
        return f"ranks that all-reduced: {seen}, want 0..{ranks - 1} once each"
    for rank, world, total, started in lines:
        if int(world) != ranks or int(total) != ranks:
            return f"rank {rank}: world {world}, sum {total}, want {ranks}"
        if started != variant.started_by:
            return f"rank {rank} started by {started}, not {variant.started_by}: fell back"
    return ""


def describe(run: Run) -> str:
    text = f"{run.seconds:.2f} s"
    if run.peak_pss_mib is not None:
        text += f" {run.peak_pss_mib:.0f} MiB"
    return text if run.ok else f"{text} FAILED ({run.problem})"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Table:
    """Medians per variant and N of the runs that succeeded, and the verdict on them."""

    def __init__(self, runs: Iterable[Run], nprocs: Sequence[int], missing: dict[str, str]):
        self.runs = list(runs)
        self.nprocs = nprocs
        self.missing = missing

    def cell(self, kind: str, variant: str, nproc: int) -> tuple[float | None, int, int]:
        """The median of `kind`'s measure, how many runs succeeded, how many there were."""
        runs = [
            r
            for r in self.runs
            if (r.kind, r.variant) == (kind, variant) and (r.nproc == nproc or not PER_N[variant])
        ]
        values = [(r.seconds if kind == "time" else r.peak_pss_mib) for r in runs if r.ok]
        good = [v for v in values if v is not None]
        return (statistics.median(good) if good else None), len(good), len(runs)

    def seconds(self, variant: str, nproc: int) -> float | None:
        return self.cell("time", variant, nproc)[0]

    def pss(self, variant: str, nproc: int) -> float | None:
        return self.cell("memory", variant, nproc)[0]

    def medians(self) -> dict[str, dict[str, dict[str, float | None]]]:
        return {
            v.name: {
                str(n): {"seconds": self.seconds(v.name, n), "peak_pss_mib": self.pss(v.name, n)}
                for n in self.nprocs
            }
            for v in VARIANTS
        }

    def verdict(self) -> list[str]:
        """Issue 13's targets, one line each: PASS, FAIL, MISSING (no such variant) or SKIP (that
        N was not measured)."""
        lines = [self._ratio("spawn", n, "torchrun", 1.0) for n in self.nprocs]
        lines += [self._ratio("fork", 2, "torchrun", 0.6), self._ratio("fork", 8, "torchrun", 0.25)]
        lines += [self._ratio("fork", n, "floor", 1.3) for n in self.nprocs]
        lines += [
            self._ratio("forkserver", 2, "torchrun", 0.9),
            self._ratio("forkserver", 8, "torchrun", 0.35),
        ]
        lines += [self._less_memory(w, n) for w in ("fork", "forkserver") for n in self.nprocs]
        return lines

    def _ratio(self, variant: str, nproc: int, base: str, limit: float) -> str:
        target = f"{variant} <= {limit}x {base} at N={nproc}"
        if variant in self.missing:
            return f"MISSING {target}: {self.missing[variant]}"
        if nproc not in self.nprocs:
            return f"SKIP {target}: N={nproc} not measured"
        mine, theirs = self.seconds(variant, nproc), self.seconds(base, nproc)
        if mine is None or theirs is None:
            return f"FAIL {target}: no successful run to compare"
        ratio = mine / theirs
        verdict = "PASS" if ratio <= limit else "FAIL"
        return f"{verdict} {target}: {mine:.3f} s / {theirs:.3f} s = {ratio:.3f}x"

    def _less_memory(self, variant: str, nproc: int) -> str:
        target = f"{variant} peak PSS < spawn's at N={nproc}"
        if variant in self.missing:
            return f"MISSING {target}: {self.missing[variant]}"
        mine, theirs = self.pss(variant, nproc), self.pss("spawn", nproc)
        if mine is None or theirs is None:
            return f"FAIL {target}: no successful run to compare"
        verdict = "PASS" if mine < theirs else "FAIL"
        return f"{verdict} {target}: {mine:.0f} MiB vs {theirs:.0f} MiB"

    def markdown(self, meta: dict[str, object], verdict: list[str]) -> str:
        heads = [f"N={n}" for n in self.nprocs]

        def grid(kind: str, fmt: Callable[[str, int, float], str]) -> list[str]:
            rows = ["| variant | " + " | ".join(heads) + " |", "|---" * (len(heads) + 1) + "|"]
            for v in VARIANTS:
                cells = []
                for n in self.nprocs:
                    median, good, total = self.cell(kind, v.name, n)
                    if v.name in self.missing:
                        cells.append("missing")
                    elif kind == "memory" and not v.sampled:
                        cells.append("not sampled")
                    elif median is None:
                        cells.append(f"failed ({total} runs)")
                    else:
                        failed = f" ({total - good} of {total} failed)" if good < total else ""
                        cells.append(fmt(v.name, n, median) + failed)
                rows.append(f"| {v.label} | " + " | ".join(cells) + " |")
            return rows

        def ratio(variant: str, nproc: int, median: float) -> str:
            base = self.seconds("torchrun", nproc)
            return f"{median / base:.2f}x" if base else "n/a"

        lines = [
            "# Launch benchmark",
            "",
            f"{meta['date']}; {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['memory_gib']} GiB;"
            f" Python {meta['python']}, torch {meta['torch']}, gloo. Medians of {meta['runs']}"
            f" timed runs and {meta['memory_runs']} memory runs per cell; load average"
            f" {meta['load_average_start']} at the start, {meta['load_average_end']} at the end;"
            f" build {meta['build_seconds']} s, whole benchmark {meta['wall_seconds']} s."
            f" Command: `{meta['command']}`.",
            "",
            "Seconds from exec until every rank has all-reduced once and the job has exited:",
            "",
            *grid("time", lambda v, n, m: f"{m:.2f}"),
            "",
            "Ratio to bare torchrun:",
            "",
            *grid("time", ratio),
            "",
            "Peak PSS of the whole process tree, MiB:",
            "",
            *grid("memory", lambda v, n, m: f"{m:.0f}"),
            "",
        ]
        if self.missing:
            lines += ["Missing variants:", ""]
            lines += [f"- {name}: {why}" for name, why in self.missing.items()] + [""]
        failed = [r for r in self.runs if not r.ok and r.variant not in self.missing]
        if failed:
            lines += [f"Failed runs ({len(failed)}, not in the medians):", ""]
            lines += [f"- {r.kind} {r.variant} N={r.nproc}: {r.problem}" for r in failed] + [""]
        lines += ["Verdict (issue 13's targets):", "", "```", *verdict, "```", ""]
        return "\n".join(lines)


def plot(table: Table, meta: dict[str, object], path: Path) -> None:
    """Latency and peak PSS against N, one line per variant; the floor dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (latency, memory) = plt.subplots(1, 2, figsize=(12, 4.8))
    for axes, measure in ((latency, table.seconds), (memory, table.pss)):
        for index, v in enumerate(VARIANTS):
            points = [(n, measure(v.name, n)) for n in table.nprocs]
            shown = [(n, y) for n, y in points if y is not None]
            if shown:
                floor = v.name == "floor"
                style = {
                    "linestyle": "--" if floor else "-",
                    "color": "black" if floor else f"C{index}",
                }
                axes.plot(*zip(*shown, strict=True), marker="o", label=v.label, **style)
        axes.set_xscale("log", base=2)
        axes.set_xticks(list(table.nprocs), [str(n) for n in table.nprocs])
        axes.set_xlabel("local workers N (CPU, gloo)")
        axes.set_ylim(bottom=0)
        axes.grid(alpha=0.3)
    latency.set_ylabel("seconds from exec to the last exit (median)")
    memory.set_ylabel("peak PSS of the process tree, MiB (median)")
    latency.legend(fontsize=8)
    fig.suptitle(
        f"Launching a one-all_reduce job, torch {meta['torch']} on {meta['cpus']} CPUs (load"
        f" average {meta['load_average_start']} at the start): medians of {meta['runs']} timed runs"
        f" (left) and of {meta['memory_runs']} sampled runs (right)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
