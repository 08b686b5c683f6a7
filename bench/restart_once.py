"""The restart benchmark's job (bench/restart.py): every attempt all-reduces once.

In the first attempt rank 1 notes the time and exits 1 right after that all-reduce, and the others
fail in the next one; torch elastic restarts the group (max_restarts=1), and every rank of the
second attempt notes when its first all-reduce completed. Notes go to $RESTART_BENCH_DIR, one file
each (`failed`, `resumed-rank<R>`), as time.time() of one machine.
"""

import os
import sys
import time

import torch
import torch.distributed as dist


def note(name: str) -> None:
    path = os.path.join(os.environ["RESTART_BENCH_DIR"], name)
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        f.write(repr(time.time()))
    os.replace(f"{path}.tmp", path)


def main() -> None:
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    one = torch.ones(1)  # alive until the group is destroyed (pytorch#154976)
    dist.all_reduce(one)
    if attempt == 0:
        if rank == 1:
            note("failed")
            sys.exit(1)
        dist.all_reduce(one)  # fails as rank 1 exits: its peers' echo
    note(f"resumed-rank{rank}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
