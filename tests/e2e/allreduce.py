"""A plain torchrun script: all-reduce a one from every rank and check the sum is the world size.

It knows nothing of Bazel and runs as `torchrun --nproc-per-node=2 allreduce.py` too, with tests/
on PYTHONPATH for its probe library (tests/harness/probe.py). For the tests, each rank writes what
it saw to $PROBE_DIR/rank<N>.json, then obeys the PROBE_* variables of `misbehave`.
"""

import os
import sys
import time

import torch
import torch.distributed as dist
from harness import probe


def main() -> None:
    deaf = probe.deafen()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.ones(1)
    dist.all_reduce(total)
    assert int(total.item()) == world == int(os.environ["WORLD_SIZE"]), (total, world)

    print(f"allreduce: rank {rank} of {world}: sum {int(total.item())}")
    if os.environ.get("PROBE_DIR"):
        report = {
            "rank": rank,
            "world_size": world,
            "sum": int(total.item()),
            "argv": sys.argv[1:],
            "file": __file__,
            "pid": os.getpid(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "master_addr": os.environ["MASTER_ADDR"],
            "group_rank": int(os.environ["GROUP_RANK"]),
            "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME", ""),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        }
        probe.write_report(f"rank{rank}.json", report)
    misbehave(rank, deaf)
    dist.destroy_process_group()


def misbehave(rank: int, deaf: bool) -> None:
    """PROBE_SLEEP=S: every rank sleeps S seconds. PROBE_DEAF_RANK=R: rank R ignores SIGTERM from
    the start and never returns. PROBE_FAILURES (probe.py's grammar): the rank it names fails, once
    the deaf rank has reported."""
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    if deaf:
        probe.never_return()
    deaf_rank = probe.deaf_rank()
    deaf_report = os.path.join(os.environ.get("PROBE_DIR", ""), f"rank{deaf_rank}.json")
    while deaf_rank is not None and not os.path.exists(deaf_report):
        time.sleep(0.05)
    probe.fail_if_planned(rank)


if __name__ == "__main__":
    main()
