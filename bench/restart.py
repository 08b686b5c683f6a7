"""Restart benchmark (issue 21): how long a failed rank costs, on one node and across nodes.

From the repository root (the benchmark builds what it runs itself):

    tools/setup.sh python bench/restart.py            # 5 runs of each variant; node loss once each
    tools/setup.sh python bench/restart.py --quick    # one of each

**Restart on one node.** bench/restart_once.py on 4 local CPU workers with max_restarts=1: rank 1
exits 1 after the first all-reduce, the others fail with its echo, torch elastic restarts the
group. The latency is from rank 1's exit to the last rank's first all-reduce of the second attempt
(time.time() noted by the ranks themselves), started in each of these ways:

    torchrun   `torchrun --standalone --nproc-per-node=4 --max-restarts=1`, the baseline, with
               TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: without it torch 2.13's restart hangs
    spawn      the built binary bazel-bin/bench/restart_once: workers re-enter it through its stub
    fork       the same with PET_START_METHOD=fork (warm start)

**Node loss** (root only: simulated hosts, tests/harness/netns.py). tests/e2e/steps.py, a job of
steps that checkpoints from rank 0, on 3 hosts x 2 ranks, nnodes=2:3, max_restarts=3,
last_call_timeout=5; the third host is SIGKILLed whole at step 8. The recovery time is from the
kill to the last of the survivors' 4 ranks' first all-reduce of the new round, for the built
binary (TF_CONFIG) and for bare torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.

The variants take turns run by run. Every run is checked (the second attempt's 4 ranks, or the
new round's 4 ranks as a world of 4); failed runs are counted, medians are over the others.
Writes bench/results/restart.json and restart.md; exits 0 when every run succeeded and the targets
(spawn <= 0.9x torchrun, fork <= 0.25x) hold.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from launch import NO_LINKS, ROOT, TORCHRUN, bazel, clean_environment, say

sys.path.insert(0, str(ROOT / "tests"))
from harness import netns  # the tests' simulated hosts

NPROC = 4
TIMEOUT_S = 180
TARGETS = {"spawn": 0.9, "fork": 0.25}
_NO_SHARED_STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def restart_variants(bazel_bin: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each variant's command and environment."""
    binary = [str(bazel_bin / "bench" / "restart_once")]
    ours = {"PET_NPROC_PER_NODE": str(NPROC), "PET_MAX_RESTARTS": "1"}
    return {
        "torchrun": (
            [
                str(TORCHRUN),
                "--standalone",
                f"--nproc-per-node={NPROC}",
                "--max-restarts=1",
                str(ROOT / "bench" / "restart_once.py"),
            ],
            _NO_SHARED_STORE,
        ),
        "spawn": (binary, ours),
        "fork": (binary, {**ours, "PET_START_METHOD": "fork"}),
    }


def restart_once(command: list[str], env: dict[str, str]) -> float | str:
    """One run: the restart latency in seconds, or why the run failed."""
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as notes:
        done = subprocess.run(
            command,
            env={**env, "RESTART_BENCH_DIR": notes},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        found = {p.name: float(p.read_text()) for p in Path(notes).iterdir()}
    resumed = [t for name, t in found.items() if name.startswith("resumed-rank")]
    if done.returncode != 0 or "failed" not in found or len(resumed) != NPROC:
        return f"exit {done.returncode}, notes {sorted(found)}: {done.stderr[-2000:]}"
    return max(resumed) - found["failed"]


def node_loss_once(variant: str, bazel_bin: Path, env: dict[str, str]) -> float | str:
    """One node-loss run on 3 simulated hosts: the recovery time in seconds, or why it failed."""
    with netns.hosts(3) as hosts, tempfile.TemporaryDirectory(prefix="node-loss-") as scratch:
        probe = Path(scratch)
        procs = [
            h.popen(
                _node_command(variant, bazel_bin, hosts, i),
                _node_env(variant, env, probe, hosts, i),
                probe / f"host{i}.log",
            )
            for i, h in enumerate(hosts)
        ]
        try:
            checkpoint = probe / "checkpoint.json"
            started = time.monotonic()
            while not (checkpoint.is_file() and json.loads(checkpoint.read_text())["step"] >= 8):
                if time.monotonic() - started > TIMEOUT_S:
                    return "never reached step 8"
                time.sleep(0.05)
            crashed = time.time()
            netns.kill_all(hosts[2].netns)
            codes = [proc.wait(timeout=TIMEOUT_S) for proc in procs[:2]]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        starts = [json.loads(p.read_text()) for p in probe.glob("start-*.json")]
        resumed = [s for s in starts if s["time"] > crashed]
        if codes != [0, 0] or sorted((s["rank"], s["world_size"]) for s in resumed) != [
            (rank, 4) for rank in range(4)
        ]:
            return f"exits {codes}, resumed {resumed}"
        return max(s["time"] for s in resumed) - crashed


def _node_command(variant: str, bazel_bin: Path, hosts: Sequence[netns.Host], i: int) -> list[str]:
    if variant == "ours":
        return [str(bazel_bin / "tests" / "e2e" / "steps")]
    endpoint = "localhost" if i == 0 else hosts[0].address  # pytorch#79388
    return [
        str(TORCHRUN),
        "--nnodes=2:3",
        "--nproc-per-node=2",
        "--max-restarts=3",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}:29511",
        "--rdzv-id=node-loss-bench",
        "--rdzv-conf=last_call_timeout=5",
        f"--local-addr={hosts[i].address}",
        str(ROOT / "tests" / "e2e" / "steps.py"),
    ]


def _node_env(
    variant: str, env: dict[str, str], probe: Path, hosts: Sequence[netns.Host], i: int
) -> dict[str, str]:
    job = {**env, "PROBE_DIR": str(probe), "PROBE_STEPS": "24"}
    if variant == "ours":
        return {**job, "TF_CONFIG": netns.tf_config(hosts, i), "PET_NNODES": "2:3",
                "PET_MAX_RESTARTS": "3"}  # fmt: skip
    return {
        **job,
        **_NO_SHARED_STORE,
        "PYTHONPATH": str(ROOT / "tests"),
        "GLOO_SOCKET_IFNAME": "eth0",
    }


def rounds(
    names: Sequence[str], runs: int, once: Callable[[str], float | str], what: str
) -> dict[str, list[float | str]]:
    """`runs` runs of each of `names`, taking turns, the order rotated each time."""
    results: dict[str, list[float | str]] = {name: [] for name in names}
    for repetition in range(runs):
        turn = repetition % len(names)
        for name in [*names[turn:], *names[:turn]]:
            result = once(name)
            results[name].append(result)
            shown = f"{result:.2f} s" if isinstance(result, float) else f"FAILED: {result}"
            say(f"{what} {repetition + 1}/{runs}, {name}: {shown}")
    return results


def median(results: list[float | str]) -> float | None:
    times = [r for r in results if isinstance(r, float)]
    return statistics.median(times) if times else None


def markdown(
    restart: dict[str, list[float | str]], loss: dict[str, list[float | str]]
) -> tuple[str, bool]:
    """The tables and the verdict; whether every run succeeded and every target held."""
    base = median(restart["torchrun"])
    lines = [
        f"# Restart benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs)",
        "",
        f"Restart on one node, {NPROC} ranks: rank 1 fails, until the last rank's first all-reduce"
        " of the next attempt (median, seconds).",
        "",
        "| variant | median | runs failed | ratio to torchrun | target |",
        "|---|---|---|---|---|",
    ]
    good = all(isinstance(r, float) for runs in (*restart.values(), *loss.values()) for r in runs)
    for name, results in restart.items():
        value = median(results)
        ratio = value / base if value is not None and base else None
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            passed = ratio is not None and ratio <= target
            good &= passed
            verdict = f"{'PASS' if passed else 'FAIL'} (<= {target}x)"
        failed = sum(not isinstance(r, float) for r in results)
        lines.append(
            f"| {name} | {_seconds(value)} | {failed}/{len(results)}"
            f" | {'' if ratio is None else f'{ratio:.2f}x'} | {verdict} |"
        )
    if loss:
        lines += [
            "",
            "Node loss on 3 simulated hosts x 2 ranks, nnodes=2:3: from the crash of a host to the"
            " survivors' 4 ranks' first all-reduce of the new round (median, seconds).",
            "",
            "| variant | median | runs failed |",
            "|---|---|---|",
        ]
        for name, results in loss.items():
            failed = sum(not isinstance(r, float) for r in results)
            lines.append(f"| {name} | {_seconds(median(results))} | {failed}/{len(results)} |")
    return "\n".join(lines) + "\n", good


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="restart runs of each variant")
    parser.add_argument(
        "--node-loss-runs", type=int, default=1, help="node-loss runs of each (0: none; root only)"
    )
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 1)
    env = clean_environment(os.environ)
    try:
        say("bazel build //bench:restart_once //tests/e2e:steps")
        bazel(env, "build", NO_LINKS, "//bench:restart_once", "//tests/e2e:steps")
        bazel_bin = Path(bazel(env, "info", "bazel-bin").strip())
        variants = restart_variants(bazel_bin)
        restart = rounds(
            list(variants),
            args.runs,
            lambda n: restart_once(variants[n][0], {**env, **variants[n][1]}),
            "restart",
        )
        loss = rounds(
            ["torchrun", "ours"],
            args.node_loss_runs,
            lambda n: node_loss_once(n, bazel_bin, env),
            "node loss",
        )
    finally:
        bazel(env, "shutdown")
    loss = {name: runs for name, runs in loss.items() if runs}
    text, good = markdown(restart, loss)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "restart.json").write_text(
        json.dumps({"restart": restart, "node_loss": loss}, indent=1) + "\n"
    )
    (args.out / "restart.md").write_text(text)
    print(text)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
