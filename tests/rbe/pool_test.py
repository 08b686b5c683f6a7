"""The ranks of //tests/rbe:pool_test: every rank runs in the one directory of the test action,
which on a remote worker is the input root it staged from CAS (real files, no symlinks)."""

import os
import unittest

import torch.distributed as dist


class PoolTest(unittest.TestCase):
    def test_every_rank_runs_in_the_test_actions_directory(self) -> None:
        dist.init_process_group("gloo")
        directories: list[object] = [None] * dist.get_world_size()
        dist.all_gather_object(directories, os.getcwd())
        dist.destroy_process_group()
        self.assertEqual(len(set(directories)), 1, directories)


if __name__ == "__main__":
    unittest.main()
