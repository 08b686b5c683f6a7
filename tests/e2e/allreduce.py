"""A plain torchrun script: all-reduce a one from every rank and check the sum is the world size.

It knows nothing of Bazel and runs as `torchrun --nproc-per-node=2 allreduce.py` too. For the tests,
each rank writes what it saw to $PROBE_DIR/rank<N>.json, then obeys the PROBE_* variables below.
"""

import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist


def main() -> None:
    stuck = os.environ.get("PROBE_STUCK_RANK") == os.environ["RANK"]
    if stuck:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.ones(1)
    dist.all_reduce(total)
    assert int(total.item()) == world == int(os.environ["WORLD_SIZE"]), (total, world)

    print(f"allreduce: rank {rank} of {world}: sum {int(total.item())}")
    probe_dir = os.environ.get("PROBE_DIR")
    if probe_dir:
        report = {
            "rank": rank,
            "world_size": world,
            "sum": int(total.item()),
            "argv": sys.argv[1:],
            "file": __file__,
            "pid": os.getpid(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "master_addr": os.environ["MASTER_ADDR"],
            "group_rank": int(os.environ["GROUP_RANK"]),
            "gloo_socket_ifname": os.environ.get("GLOO_SOCKET_IFNAME", ""),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        }
        path = os.path.join(probe_dir, f"rank{rank}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False)
        os.replace(path + ".tmp", path)  # readers never see half a report
    misbehave(rank, stuck)
    dist.destroy_process_group()


def misbehave(rank: int, stuck: bool) -> None:
    """PROBE_SLEEP=S: every rank sleeps S seconds. PROBE_STUCK_RANK=R: rank R ignores SIGTERM from
    the start and never returns. PROBE_FAIL_RANK=R, PROBE_FAIL_CODE=N|raise: rank R exits N or
    raises (once the stuck rank has reported), on the first PROBE_FAIL_RESTARTS attempts only
    (default: every attempt)."""
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    if stuck:
        while True:
            time.sleep(60)
    stuck_report = os.path.join(
        os.environ.get("PROBE_DIR", ""), f"rank{os.environ.get('PROBE_STUCK_RANK')}.json"
    )
    while "PROBE_STUCK_RANK" in os.environ and not os.path.exists(stuck_report):
        time.sleep(0.05)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if str(rank) != os.environ.get("PROBE_FAIL_RANK"):
        return
    if attempt >= int(os.environ.get("PROBE_FAIL_RESTARTS", sys.maxsize)):
        return
    code = os.environ["PROBE_FAIL_CODE"]
    if code == "raise":
        raise RuntimeError(f"probe failure on rank {rank}")
    sys.exit(int(code))


if __name__ == "__main__":
    main()
