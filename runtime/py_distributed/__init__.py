"""Distributed PyTorch training as a plain Bazel target.

A `py_distributed_binary` runs torchrun in its own process; every worker re-enters the same Bazel
binary and runs the user's unmodified torchrun-style main. `maybe_run_training` does the same from
any Python program (the seed's API).

Importing this package is cheap, and its names are loaded when first used (PEP 562): every worker
of every job imports it before the user's main runs, and needs none of the launcher's modules.
torch is imported only by the launcher and by the user's code.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from py_distributed.cluster import Cluster, Machine, machine_from_env
    from py_distributed.training import maybe_run_training
    from py_distributed.worker import is_distributed_worker

__all__ = ["Cluster", "Machine", "is_distributed_worker", "machine_from_env", "maybe_run_training"]

_MODULE_OF = {
    "Cluster": "py_distributed.cluster",
    "Machine": "py_distributed.cluster",
    "machine_from_env": "py_distributed.cluster",
    "maybe_run_training": "py_distributed.training",
    "is_distributed_worker": "py_distributed.worker",
}


def __getattr__(name: str) -> object:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'py_distributed' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
