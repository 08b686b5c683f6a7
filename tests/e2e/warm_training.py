"""The seed's API from a plain script, for the CUDA rule of tests/e2e/test_warm_start.py.

Run as `python warm_training.py` with runtime/ and tests/ on PYTHONPATH. Each rank all-reduces a
one and writes $PROBE_DIR/rank<N>.json: whether it was forked, and what it inherited of CUDA. With
PROBE_TOUCH_CUDA=1 the program marks CUDA initialised before it calls maybe_run_training, as far as
a CPU build can (see touches_cuda.py); with PROBE_IMPORT_TOUCHES_CUDA=1 a module it imports at its
top level does, when imported. Its top level makes a temporary directory in $PROBE_DIR, which each
process that runs it must remove at its exit; each rank reports the one it sees.
"""

import multiprocessing
import os
import tempfile

import torch
import torch.distributed as dist
import touches_cuda  # noqa: F401  # PROBE_IMPORT_TOUCHES_CUDA
from harness import probe

from py_distributed import maybe_run_training

SCRATCH = tempfile.TemporaryDirectory(prefix="warm_training-", dir=os.environ.get("PROBE_DIR"))


def train(tag: str) -> None:
    dist.init_process_group("gloo")
    total = torch.ones(1)
    dist.all_reduce(total)
    report = {
        "rank": dist.get_rank(),
        "sum": int(total.item()),
        "tag": tag,
        "forked": multiprocessing.parent_process() is not None,
        "cuda_initialised": bool(torch.cuda._initialized),  # as in warm_probe.py
        "scratch": SCRATCH.name,
    }
    probe.write_report(f"rank{report['rank']}.json", report)
    dist.destroy_process_group()


if __name__ == "__main__":
    if os.environ.get("PROBE_TOUCH_CUDA") == "1":
        torch.cuda._initialized = True
    maybe_run_training(train, __name__, nproc_per_node=2, tag="kwargs arrive")
