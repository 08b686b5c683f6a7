"""A distributed test written for pytest: each rank runs pytest on this file in its own process."""

import sys
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist


@pytest.fixture(scope="module")
def handed_to_gloo() -> Iterator[list[torch.Tensor]]:
    """The default process group, and a list that keeps the tensors handed to it until it goes.

    Before torch 2.8, a gloo thread keeps its last collective's tensors until the group is
    destroyed; freeing one that Python has already let go of needs the GIL, which
    destroy_process_group holds while it waits for that thread (pytorch#154976).
    """
    dist.init_process_group("gloo")
    handed: list[torch.Tensor] = []
    yield handed
    dist.destroy_process_group()


def test_all_gather_sees_every_rank(handed_to_gloo: list[torch.Tensor]) -> None:
    mine = torch.tensor([float(dist.get_rank())])
    gathered = [torch.zeros(1) for _ in range(dist.get_world_size())]
    handed_to_gloo += [mine, *gathered]
    dist.all_gather(gathered, mine)
    assert [int(t.item()) for t in gathered] == list(range(dist.get_world_size()))


if __name__ == "__main__":
    # No .pytest_cache: the runfiles tree may be read-only, and ranks would race on it.
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
