"""Digits classifier trained with DistributedDataParallel: a plain torchrun script.

Runs unchanged under `torchrun --nproc-per-node=2 train/model.py` and as `bazel run //train:model`.
The data set is scikit-learn's 8x8 digits (it ships inside scikit-learn: nothing is downloaded).
Rank 0 prints the loss and held-out accuracy of every epoch and writes the checkpoint after each.
A job whose rank 0 finds a checkpoint of fewer epochs than it asks for resumes from it, every rank
loading what rank 0 read: a restarted attempt, an elastic job that lost a node and goes on as a
smaller world, a job requeued by its scheduler, or `--epochs` raised to train on.
"""

import argparse
import gc
import os
import sys

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint",
        default="train_output/model.pt",
        help="where rank 0 saves the model after every epoch, and where a job resumes from;"
        " relative to the directory `bazel run` was called from, or in `bazel test` to the"
        " test's outputs",
    )
    return parser.parse_args(argv)


def digits(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """80/20 stratified split of the digits, pixels scaled to [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=0.2, stratify=y, random_state=seed
    )

    def tensors(x, y):
        return TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))

    return tensors(x_train, y_train), tensors(x_test, y_test)


def checkpoint_path(path: str) -> str:
    # `bazel run` starts the binary inside its runfiles; the user meant the directory they were in.
    # `bazel test` keeps what a test writes to its undeclared outputs (test.outputs/outputs.zip).
    env = os.environ
    where = env.get("BUILD_WORKING_DIRECTORY") or env.get("TEST_UNDECLARED_OUTPUTS_DIR")
    return os.path.join(where or os.getcwd(), path)


def setup_process_group() -> tuple[int, int, torch.device]:
    """Joins the job, nccl on CUDA or gloo on CPU; returns (rank, world size, this device)."""
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def announce(world: int) -> None:
    nodes = world // int(os.environ.get("LOCAL_WORLD_SIZE", world))
    rdzv = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    print(f"digits: {world} workers, {nodes} node(s), backend {dist.get_backend()}, rdzv {rdzv}")


def loaders(seed: int, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """Each worker's shard of the training set (reshuffled every epoch) and of the held-out set."""
    train_set, test_set = digits(seed)
    sampler = DistributedSampler(train_set, shuffle=True, seed=seed)
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler)
    test = DataLoader(test_set, batch_size=256, sampler=DistributedSampler(test_set, shuffle=False))
    return train, test


def model(device: torch.device) -> DistributedDataParallel:
    """A small MLP, replicated: DDP starts every worker from rank 0's weights."""
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    return DistributedDataParallel(mlp, device_ids=[device] if device.type == "cuda" else None)


def train_one_epoch(
    ddp: DistributedDataParallel, train: DataLoader, optimizer: torch.optim.Optimizer, epoch: int
) -> float:
    """One pass over this worker's shard; returns the mean loss over every worker's samples."""
    device = next(ddp.parameters()).device
    train.sampler.set_epoch(epoch)
    ddp.train()
    totals = torch.zeros(2, device=device)  # summed loss, samples
    for x, y in train:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        optimizer.step()
        totals += torch.stack([loss.detach() * len(y), torch.tensor(len(y), device=device)])
    dist.all_reduce(totals)
    return (totals[0] / totals[1]).item()


def evaluate(ddp: DistributedDataParallel, test: DataLoader) -> float:
    """Accuracy on the whole held-out set, every worker scoring its shard."""
    device = next(ddp.parameters()).device
    ddp.eval()
    counts = torch.zeros(2, device=device)  # correct, seen
    with torch.no_grad():
        for x, y in test:
            x, y = x.to(device), y.to(device)
            counts += torch.tensor([(ddp(x).argmax(1) == y).sum(), len(y)], device=device)
    dist.all_reduce(counts)
    return (counts[0] / counts[1]).item()


def report(epoch: int, epochs: int, loss: float, accuracy: float) -> None:
    print(f"epoch {epoch}/{epochs}: loss {loss:.4f}, held-out accuracy {accuracy:.1%}", flush=True)


def save_checkpoint(
    ddp: DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    accuracy: float,
    path: str,
) -> None:
    """Rank 0's, after `epoch` epochs; replaced whole, so that a crash leaves the last one."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    state = {
        "model": ddp.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "accuracy": accuracy,
    }
    torch.save(state, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)


def resume(
    ddp: DistributedDataParallel, optimizer: torch.optim.Optimizer, path: str, epochs: int
) -> int:
    """The epochs done already: those of rank 0's checkpoint at `path`, where it has fewer than
    `epochs`, handed to every rank (which needs no file system shared with rank 0, and cannot
    disagree with it); 0 where there is none, or it is of a job that finished."""
    state = None
    if dist.get_rank() == 0 and os.path.isfile(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state if state["epoch"] < epochs else None
    shared = [state]
    dist.broadcast_object_list(shared, src=0)
    if shared[0] is None:
        return 0
    ddp.module.load_state_dict(shared[0]["model"])
    optimizer.load_state_dict(shared[0]["optimizer"])
    return int(shared[0]["epoch"])


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    rank, world, device = setup_process_group()
    if rank == 0:
        announce(world)
    torch.manual_seed(args.seed)
    train, test = loaders(args.seed, args.batch_size)
    ddp = model(device)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    path = checkpoint_path(args.checkpoint)
    done = resume(ddp, optimizer, path, args.epochs)
    if rank == 0 and done:
        print(f"resumed from {path} after epoch {done}", flush=True)
    for epoch in range(done, args.epochs):
        loss = train_one_epoch(ddp, train, optimizer, epoch)
        accuracy = evaluate(ddp, test)
        if rank == 0:
            report(epoch + 1, args.epochs, loss, accuracy)
            save_checkpoint(ddp, optimizer, epoch + 1, accuracy, path)
    if rank == 0:
        print(f"checkpoint: {path}")
    # DDP's reducer holds the process group. Freed first, it leaves the group to
    # destroy_process_group, which destroys it without the GIL; freed last, at the return, it
    # destroys the group itself holding the GIL, which deadlocks gloo's threads (torch < 2.8,
    # pytorch#154976).
    del ddp, optimizer
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
