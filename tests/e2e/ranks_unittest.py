"""A distributed test written with unittest: every rank runs this TestCase in one process group.

PROBE_FAILURES (tests/harness/probe.py's grammar; `R:assert` fails an assertion): the rank it names
fails once the group has formed, while its peers wait for it in a collective. PROBE_HANG=1: every
rank waits in `wait_for_the_timeout`, until Bazel's timeout.
"""

import os
import time
import unittest

import torch
import torch.distributed as dist
from harness import probe


def wait_for_the_timeout() -> None:
    while True:
        time.sleep(0.1)


class AllReduceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        dist.init_process_group("gloo")

    def test_all_reduce_sums_the_ranks(self) -> None:
        rank, world = dist.get_rank(), dist.get_world_size()
        if os.environ.get("PROBE_HANG") == "1":
            wait_for_the_timeout()
        probe.fail_if_planned(rank)
        value = torch.tensor([rank + 1.0])
        dist.all_reduce(value)
        self.assertEqual(value.item(), world * (world + 1) / 2)
        print(f"rank {rank} of {world}: all_reduce ok")


if __name__ == "__main__":
    unittest.main()
