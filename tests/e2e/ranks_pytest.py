"""A distributed test written for pytest: each rank runs pytest on this file in its own process."""

import sys
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist


@pytest.fixture(scope="module")
def group() -> Iterator[None]:
    dist.init_process_group("gloo")
    yield
    dist.destroy_process_group()


@pytest.mark.usefixtures("group")
def test_all_gather_sees_every_rank() -> None:
    world = dist.get_world_size()
    gathered = [torch.zeros(1) for _ in range(world)]
    dist.all_gather(gathered, torch.tensor([float(dist.get_rank())]))
    assert [int(t.item()) for t in gathered] == list(range(world))


if __name__ == "__main__":
    # No .pytest_cache: the runfiles tree may be read-only, and ranks would race on it.
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
