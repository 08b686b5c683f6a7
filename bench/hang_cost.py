"""Hang benchmark (issue 22): what the hang timeout costs a job of 2,000 small all-reduces.

    tools/setup.sh python bench/hang_cost.py [--runs N]

Runs the built bazel-bin/bench/allreduce_many (2 CPU workers, gloo) with the hang timeout off
(PY_DISTRIBUTED_HANG_TIMEOUT=0) and on (60 s: the workers report their progress every second),
taking turns run by run, and compares the medians of rank 0's own time for the 2,000 all-reduces.
Target: on costs at most 2% (1.02x). Writes bench/results/hang_cost.md.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

from launch import NO_LINKS, ROOT, bazel, clean_environment, say

TARGET = 1.02
SETTINGS = {"off": "0", "on": "60"}


def once(binary: Path, env: dict[str, str], timeout: str) -> float:
    done = subprocess.run(
        [str(binary)],
        env={**env, "PY_DISTRIBUTED_HANG_TIMEOUT": timeout},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = re.search(r"allreduce_many: ([\d.]+) s", done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        sys.exit(f"bench: allreduce_many failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return float(found[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    env = clean_environment(os.environ)
    try:
        bazel(env, "build", NO_LINKS, "//bench:allreduce_many")
        binary = Path(bazel(env, "info", "bazel-bin").strip()) / "bench" / "allreduce_many"
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for run in range(args.runs):
            for name in list(SETTINGS)[run % 2 :] + list(SETTINGS)[: run % 2]:
                times[name].append(once(binary, env, SETTINGS[name]))
            last = ", ".join(f"{name} {times[name][-1]:.3f} s" for name in SETTINGS)
            say(f"run {run + 1}/{args.runs}: {last}")
    finally:
        bazel(env, "shutdown")
    off, on = (statistics.median(times[name]) for name in SETTINGS)
    ratio = on / off
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    text = (
        "# Hang benchmark\n\n2,000 all-reduces of one float, 2 CPU workers (gloo), median of"
        f" {args.runs} runs of each, taking turns.\n\n| hang timeout | median |\n|---|---|\n"
        f"| off | {off:.3f} s |\n| on (60 s) | {on:.3f} s |\n\n"
        f"On costs {ratio:.3f}x off: {verdict} (target <= {TARGET}x).\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hang_cost.md").write_text(text)
    print(text)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
