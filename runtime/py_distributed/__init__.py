"""Distributed PyTorch training as a plain Bazel target.

A `py_distributed_binary` runs torchrun in its own process; every worker re-enters the same Bazel
binary and runs the user's unmodified torchrun-style main. Importing this package is cheap: torch is
imported only by the launcher and by the user's code.
"""

from py_distributed.worker import is_distributed_worker

__all__ = ["is_distributed_worker"]
