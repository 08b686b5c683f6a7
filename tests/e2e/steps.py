"""A torchrun-style job of steps: every step all-reduces a one, rank 0 checkpoints after it, and a
restarted or shrunk job resumes from the checkpoint, as a training job would.

PROBE_STEPS=N steps in all (default 40), each at least PROBE_STEP_SECONDS long (default 0.25);
rank PROBE_EXIT_RANK exits with code PROBE_EXIT_CODE (default 7) at step PROBE_EXIT_STEP.
The checkpoint is $PROBE_DIR/checkpoint.json, where every host sees it (a shared file system).
Every worker reports its first collective to $PROBE_DIR/start-<PID>.json (the time, its rank, the
world size, its node rank, its launcher's pid and the step it resumed from), and its end to
done-rank<R>.json.
"""

import json
import os
import sys
import time

import torch
import torch.distributed as dist
from harness import probe


def resumed_step() -> int:
    path = os.path.join(os.environ["PROBE_DIR"], "checkpoint.json")
    try:
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["step"])
    except FileNotFoundError:
        return 0


def main() -> None:
    steps = int(os.environ.get("PROBE_STEPS", "40"))
    seconds = float(os.environ.get("PROBE_STEP_SECONDS", "0.25"))
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    step = resumed_step()
    one = torch.ones(1)  # alive until the group is destroyed: see ranks_pytest.py's fixture
    dist.all_reduce(one)
    assert int(one.item()) == world, (one, world)
    probe.write_report(
        f"start-{os.getpid()}.json",
        {
            "time": time.time(),
            "rank": rank,
            "world_size": world,
            "group_rank": int(os.environ["GROUP_RANK"]),
            "launcher_pid": int(os.environ.get("PY_DISTRIBUTED_LAUNCHER_PID", "0")),
            "step": step,
        },
    )
    exits = int(os.environ.get("PROBE_EXIT_RANK", "-1")) == rank
    exit_step = int(os.environ.get("PROBE_EXIT_STEP", "0"))
    while step < steps:
        if exits and step == exit_step:
            sys.exit(int(os.environ.get("PROBE_EXIT_CODE", "7")))
        started = time.monotonic()
        one.fill_(1)
        dist.all_reduce(one)
        step += 1
        if rank == 0:
            probe.write_report("checkpoint.json", {"step": step, "world_size": world})
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    probe.write_report(f"done-rank{rank}.json", {"world_size": world, "step": step})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
