"""The hang benchmark's job (bench/hang_cost.py): 2,000 small all-reduces; rank 0 prints how long
they took, from the first to the last."""

import os
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
one = torch.ones(1)  # alive until the group is destroyed (pytorch#154976)
dist.all_reduce(one)
started = time.perf_counter()
for _ in range(int(os.environ.get("ALLREDUCES", "2000"))):
    dist.all_reduce(one)
if dist.get_rank() == 0:
    print(f"allreduce_many: {time.perf_counter() - started:.4f} s", flush=True)
dist.destroy_process_group()
