"""After one DistributedDataParallel step of the example model, every rank holds the same weights.

Each rank starts from weights of its own seed and trains on its own shard: equal weights afterwards
prove that DDP broadcast rank 0's weights and averaged every rank's gradients, the contract
`train/model.py` relies on.
"""

import gc
import unittest

import torch
import torch.distributed as dist
from model import digits, model, setup_process_group
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler


def flat_parameters(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class DdpStepTest(unittest.TestCase):
    def test_one_step_leaves_every_rank_with_rank_0s_weights_moved_alike(self) -> None:
        rank, world, device = setup_process_group()
        torch.manual_seed(rank)  # different weights on every rank until DDP syncs them
        ddp = model(device)
        before = flat_parameters(ddp)
        train_set, _ = digits(seed=0)
        shard = DataLoader(train_set, batch_size=64, sampler=DistributedSampler(train_set))
        x, y = next(iter(shard))
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
        nn.functional.cross_entropy(ddp(x.to(device)), y.to(device)).backward()
        optimizer.step()
        after = flat_parameters(ddp)

        gathered = [torch.empty_like(after) for _ in range(world)]
        dist.all_gather(gathered, after)
        self.assertFalse(torch.equal(before, after), "the step did not change the weights")
        for other, weights in enumerate(gathered):
            torch.testing.assert_close(weights, gathered[0], msg=f"rank {other} differs from 0")
        print(f"rank {rank}: {after.numel()} parameters equal on {world} ranks after one step")
        del ddp, optimizer  # before the group: see model.main (pytorch#154976)
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    unittest.main()
