"""A plain torchrun script: all-reduce a one from every rank and check the sum is the world size.

It knows nothing of Bazel and runs as `torchrun --nproc-per-node=2 allreduce.py` too. For the tests,
each rank writes what it saw to $PROBE_DIR/rank<N>.json, and rank $PROBE_FAIL_RANK exits with
$PROBE_FAIL_CODE after the all-reduce.
"""

import json
import os
import sys

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.ones(1)
    dist.all_reduce(total)
    assert int(total.item()) == world == int(os.environ["WORLD_SIZE"]), (total, world)

    probe_dir = os.environ.get("PROBE_DIR")
    if probe_dir:
        report = {
            "rank": rank,
            "world_size": world,
            "sum": int(total.item()),
            "argv": sys.argv[1:],
            "file": __file__,
            "pid": os.getpid(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
        }
        with open(os.path.join(probe_dir, f"rank{rank}.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False)
    dist.destroy_process_group()
    if str(rank) == os.environ.get("PROBE_FAIL_RANK"):
        sys.exit(int(os.environ["PROBE_FAIL_CODE"]))


if __name__ == "__main__":
    main()
