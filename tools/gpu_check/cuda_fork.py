"""A launcher that initialises CUDA before it starts its workers with start_method fork, for
tools/gpu_check.sh on a real GPU: the launch must fall back to spawn (a forked child of a process
that initialised CUDA cannot use it), say so in one line, and the spawned ranks then all-reduce
over NCCL on `cuda:LOCAL_RANK`.

Run as `PET_START_METHOD=fork python3 tools/gpu_check/cuda_fork.py` with runtime/ on PYTHONPATH.
"""

import os

import torch
import torch.distributed as dist

from py_distributed import maybe_run_training


def train() -> None:
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    dist.init_process_group("nccl")
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    assert int(total.item()) == dist.get_world_size(), total
    print(
        f"rank {dist.get_rank()}: {device}, CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES')}, all_reduce ok in a spawned worker"
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.zeros(1, device="cuda")  # the launcher's own CUDA context, before any worker starts
    assert torch.cuda.is_initialized()
    maybe_run_training(train, __name__, nproc_per_node="gpu")
