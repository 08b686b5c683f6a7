"""The seed's API from a plain py_binary: `maybe_run_training` with typed keyword arguments.

Each rank all-reduces a one and writes $PROBE_DIR/rank<N>.json with the types and values of the
kwargs it received. The kwargs include the pid of the process that evaluated them: the launcher's,
if they travelled from it, a worker's own if the worker re-evaluated them as the seed's did.
PROBE_FAILURES (tests/harness/probe.py's grammar) makes the rank it names fail once it has
reported; PROBE_NPROC sets nproc_per_node; PROBE_PYTHONPATH=1 sets set_python_path_in_subprocess;
PROBE_IS_CHIEF=1 passes is_chief=True; PROBE_MODULE is module_name (default: __name__). The
launcher prints which variables of its environment maybe_run_training changed, once it returns or
raises.
"""

import os
import sys

import torch
import torch.distributed as dist
from harness import probe

from py_distributed import is_distributed_worker, maybe_run_training


def train(**kwargs: object) -> None:
    dist.init_process_group("gloo")
    total = torch.ones(1)
    dist.all_reduce(total)
    rank = dist.get_rank()
    report = {
        "rank": rank,
        "world_size": dist.get_world_size(),
        "sum": int(total.item()),
        "kwargs": {key: [type(value).__name__, repr(value)] for key, value in kwargs.items()},
        "launcher_pid": int(os.environ["PY_DISTRIBUTED_LAUNCHER_PID"]),
        "is_distributed_worker": is_distributed_worker(),
        "argv": sys.argv[1:],
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "master_addr": os.environ["MASTER_ADDR"],
        "group_rank": int(os.environ["GROUP_RANK"]),
        "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME", ""),
    }
    probe.write_report(f"rank{rank}.json", report)
    dist.destroy_process_group()
    probe.fail_if_planned(rank)


def changed(before: dict[str, str]) -> list[str]:
    """The variables whose value differs from `before`'s, added and removed ones included."""
    return sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))


if __name__ == "__main__":
    if not is_distributed_worker():
        print("seed_api: launcher", file=sys.stderr, flush=True)
    before = dict(os.environ)
    try:
        maybe_run_training(
            train,
            os.environ.get("PROBE_MODULE", __name__),
            nproc_per_node=int(os.environ.get("PROBE_NPROC", "2")),
            set_python_path_in_subprocess=os.environ.get("PROBE_PYTHONPATH") == "1",
            is_chief=os.environ.get("PROBE_IS_CHIEF") == "1",
            evaluated_by=os.getpid(),
            lr=0.5,
            tiny=1e-300,
            epochs=3,
            verbose=True,
            resume=None,
            name="a b=c\n--d ü",
            layers=[64, 32],
            schedule={"warmup": 1, "decay": (0.1, None)},
        )
    finally:
        # Only the launcher gets here, returning or raising SystemExit: workers end in os._exit.
        print(f"seed_api: environment changed: {changed(before)}", flush=True)
