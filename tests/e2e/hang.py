"""A job that hangs as asked: every rank all-reduces once a step (0.05 s), and at step
PROBE_HANG_STEP rank PROBE_HANG_RANK sleeps outside any collective (PROBE_HANG=sleep), or enters a
broadcast where the others all-reduce (PROBE_HANG=mismatch), or keeps going slowly, 3 s a step
(PROBE_HANG=slow); without PROBE_HANG, nothing. PROBE_STEPS steps in all (default 1000)."""

import os
import time

import torch
import torch.distributed as dist


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    how = os.environ.get("PROBE_HANG", "")
    hung = rank == int(os.environ.get("PROBE_HANG_RANK", "1"))
    at = int(os.environ.get("PROBE_HANG_STEP", "5"))
    one = torch.ones(1)  # alive until the group is destroyed: see ranks_pytest.py's fixture
    for step in range(int(os.environ.get("PROBE_STEPS", "1000"))):
        if hung and step >= at and how == "slow":
            time.sleep(3)
        elif hung and step == at and how == "sleep":
            time.sleep(3600)  # the line the stacks must show
        if hung and step == at and how == "mismatch":
            dist.broadcast(one, src=rank)
        else:
            dist.all_reduce(one)
        time.sleep(0.05)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
