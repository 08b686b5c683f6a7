"""Distributed PyTorch training as a plain Bazel target.

A `py_distributed_binary` runs torchrun in its own process; every worker re-enters the same Bazel
binary and runs the user's unmodified torchrun-style main. `maybe_run_training` does the same from
any Python program (the seed's API). Importing this package is cheap: torch is imported only by
the launcher and by the user's code.
"""

from py_distributed.cluster import Cluster, Machine, machine_from_env
from py_distributed.training import maybe_run_training
from py_distributed.worker import is_distributed_worker

__all__ = ["Cluster", "Machine", "is_distributed_worker", "machine_from_env", "maybe_run_training"]
