"""The rank of //tests/e2e:gpu_nccl_test, run on a real GPU by tools/gpu_check.sh: each rank sees
exactly its node's claimed GPUs, takes `cuda:LOCAL_RANK`, and all-reduces over NCCL there."""

import os

import torch
import torch.distributed as dist


def main() -> None:
    local_rank = int(os.environ["LOCAL_RANK"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    # The claim's mask: one GPU per rank of this node, no more.
    assert torch.cuda.device_count() == int(os.environ["LOCAL_WORLD_SIZE"]), visible
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl")
    total = torch.ones(1, device=device)
    dist.all_reduce(total)
    assert int(total.item()) == dist.get_world_size(), total
    name = torch.cuda.get_device_name(device)
    rank = dist.get_rank()
    print(f"rank {rank}: {device} ({name}), CUDA_VISIBLE_DEVICES={visible}, all_reduce ok")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
