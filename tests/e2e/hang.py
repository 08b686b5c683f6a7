"""A job that hangs as asked: every rank all-reduces once a step (0.05 s), and at step
PROBE_HANG_STEP rank PROBE_HANG_RANK sleeps outside any collective (PROBE_HANG=sleep), or enters a
broadcast where the others all-reduce (PROBE_HANG=mismatch), or keeps going slowly, 2 s a step
(PROBE_HANG=slow), or, the others' peer in a subgroup of ranks 1 and 2, sleeps while rank 2 waits
in that subgroup's all-reduce and rank 0 in the world's (PROBE_HANG=subgroup); without PROBE_HANG,
nothing. PROBE_STEPS steps in all (default 1000)."""

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
    pair = dist.new_group([1, 2]) if how == "subgroup" else None
    for step in range(int(os.environ.get("PROBE_STEPS", "1000"))):
        if hung and step >= at and how == "slow":
            time.sleep(2)
        elif hung and step == at and how in ("sleep", "subgroup"):
            time.sleep(3600)  # the line the stacks must show
        if hung and step == at and how == "mismatch":
            dist.broadcast(one, src=rank)
        elif pair is not None and rank == 2 and step == at:
            dist.all_reduce(one, group=pair)
        else:
            dist.all_reduce(one)
        time.sleep(0.05)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
