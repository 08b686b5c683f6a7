"""The benchmark's job (bench/launch.py): join a gloo group, all-reduce a one once, exit.

A plain torchrun script, run unchanged by every variant the benchmark compares. Each rank prints
one line that the benchmark checks: its rank, the world size, the sum (which must equal the world
size) and how the process was started: "exec" for a fresh interpreter (torchrun's default, re-entry
through the Bazel stub), "fork", "forkserver" or "multiprocessing-spawn" for a child of
multiprocessing. That is how the benchmark tells a warm start from a fall back to the default.
"""

import multiprocessing
import os
import sys

import torch
import torch.distributed as dist


def started_by() -> str:
    if multiprocessing.parent_process() is None:
        return "exec"
    # multiprocessing's spawn and forkserver start Python with their module on its command line.
    if b"multiprocessing.spawn" in _cmdline(os.getpid()):
        return "multiprocessing-spawn"
    return "forkserver" if b"multiprocessing.forkserver" in _cmdline(os.getppid()) else "fork"


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read()


def main() -> None:
    dist.init_process_group("gloo")
    total = torch.ones(1)
    dist.all_reduce(total)
    rank, world, started = dist.get_rank(), dist.get_world_size(), started_by()
    line = f"allreduce_once: rank {rank} of {world}: sum {int(total.item())}, started by {started}"
    # One write for the line and its end: under `python -u` (torchrun's workers) print writes them
    # apart, and the ranks share one output file.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
