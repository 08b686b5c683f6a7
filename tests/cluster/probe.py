"""The cluster tests' job: each rank says where it started, then sleeps or fails as asked.

It needs no torch of its own (the launcher brings it), so its ranks start fast.
  --sleep=S                  every rank sleeps S seconds, then exits 0; each SIGUSR1, a line
  --fail-rank=R --code=C     rank R exits with C after --fail-after seconds; the others sleep
  --collective               every rank joins a gloo group first, and the others wait in an
                             all-reduce instead of sleeping: rank R's exit fails them at once
"""

import argparse
import os
import signal
import socket
import sys
import time

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--sleep", type=float, default=0)
parser.add_argument("--fail-rank", type=int, default=-1)
parser.add_argument("--code", type=int, default=1)
parser.add_argument("--fail-after", type=float, default=1)
parser.add_argument("--collective", action="store_true")
args = parser.parse_args()
rank = int(os.environ["RANK"])
signal.signal(signal.SIGUSR1, lambda *_: print(f"probe: rank {rank} got SIGUSR1", flush=True))
print(
    f"probe: rank {rank} of {os.environ['WORLD_SIZE']} started on {socket.gethostname()},"
    f" pid {os.getpid()}",
    flush=True,
)
if args.collective:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
if rank == args.fail_rank:
    time.sleep(args.fail_after)
    sys.exit(args.code)
if args.collective:
    dist.all_reduce(torch.ones(1))
time.sleep(args.sleep)
