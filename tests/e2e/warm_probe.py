"""A torchrun script for tests/e2e/test_warm_start.py: what a worker that torch elastic forked must
find, in $PROBE_DIR/rank<N>.json.

Each rank all-reduces a one, then reports how it was started (forked by multiprocessing, and from
which parent), what it inherited of CUDA, the launcher's signal handlers and logging level, and its
argv, __name__ and environment: its markers, the variable a launch sets for its workers only once
it runs them, and torchrun's PET_START_METHOD, which the launcher keeps from its workers. It
registers an exit handler that writes $PROBE_DIR/exit<N>, as a worker's own exit handlers must run.
PROBE_EXIT=os_exit0 ends every rank with os._exit(0), as a main that dodges interpreter teardown
does. PROBE_SCRATCH=1 has rank 1 report whether the temporary directories that a top-level import
made (tests/e2e/warm_probe_scratch.py) are still there after rank 0's exit handlers have run.
"""

import atexit
import gc
import logging
import multiprocessing
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from harness import probe

import tests.e2e.warm_probe_scratch as scratch
from py_distributed import is_distributed_worker


def main() -> None:
    dist.init_process_group("gloo")
    total = torch.ones(1)
    dist.all_reduce(total)
    rank = dist.get_rank()
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        libcuda = "/libcuda.so" in maps.read()
    report = {
        "rank": rank,
        "sum": int(total.item()),
        "argv": sys.argv[1:],
        "name": __name__,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "forked": multiprocessing.parent_process() is not None,
        # torch's lazy-init flag, which a fork inherits: torch.cuda.is_initialized() reads it, and
        # on a CUDA build hides it in a child forked after CUDA was initialised (a "bad fork").
        "cuda_initialised": bool(torch.cuda._initialized),
        "libcuda": libcuda,
        "logging_disabled": logging.root.manager.disable,
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "sigint_default": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "worker_marker": is_distributed_worker(),
        "launcher_pid": int(os.environ["PY_DISTRIBUTED_LAUNCHER_PID"]),
        "workers_dir": "PY_DISTRIBUTED_WORKERS_DIR" in os.environ,
        "frozen_objects": gc.get_freeze_count(),
        "pet_start_method": os.environ.get("PET_START_METHOD"),
        "scratch": [scratch.SCRATCH.name, scratch.AT_EXIT],
    }
    if rank == 1 and os.environ.get("PROBE_SCRATCH"):
        report["scratch_kept"] = _kept_after_exit_of_rank0(report["scratch"])
    atexit.register(probe.write_report, f"exit{rank}", {"rank": rank})
    probe.write_report(f"rank{rank}.json", report)
    dist.destroy_process_group()
    if os.environ.get("PROBE_EXIT") == "os_exit0":
        os._exit(0)


def _kept_after_exit_of_rank0(directories: list[str]) -> list[bool]:
    """Whether each of `directories` is still there once rank 0 has run its exit handlers: its own,
    which write exit0, then those that it inherited, if any, right after."""
    done = os.path.join(os.environ["PROBE_DIR"], "exit0")
    deadline = time.monotonic() + 60
    while not os.path.exists(done):
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank 0 did not run its exit handlers within 60 s: no {done}")
        time.sleep(0.01)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and all(map(os.path.isdir, directories)):
        time.sleep(0.01)
    return [os.path.isdir(directory) for directory in directories]


if __name__ == "__main__":
    main()
