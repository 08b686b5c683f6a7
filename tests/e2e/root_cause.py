"""A torchrun script in which one rank fails while its peers wait for it in a collective.

The peers then fail too, a few milliseconds later, with only an echo of the first failure (gloo's
"Connection closed by peer"): the case where a launcher that orders failures by whole seconds
blames the wrong rank.

PROBE_FAILURES=RANK:MODE[,RANK:MODE...]: on attempt N (TORCHELASTIC_RESTART_COUNT), the Nth entry's
rank fails by MODE: exit7 (SystemExit(7)), raise (RuntimeError), os_exit3 (os._exit(3)), sigkill
(SIGKILL to itself); attempts past the list succeed. Just before failing it writes the wall-clock
time to $PROBE_DIR/failed<N>.json; every rank writes up<RANK>.json once all are up.
PROBE_DEAF_RANK=R: rank R ignores SIGTERM and never returns.
"""

import json
import os
import signal
import time

import echo_probe  # its failure modes
import torch
import torch.distributed as dist


def main() -> None:
    deaf = os.environ.get("PROBE_DEAF_RANK") == os.environ["RANK"]
    if deaf:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    dist.init_process_group("gloo")
    dist.all_reduce(torch.ones(1))  # every rank is up
    write(f"up{dist.get_rank()}.json", {"time": time.time()})
    while deaf:
        time.sleep(60)
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    plan = [entry.split(":") for entry in os.environ.get("PROBE_FAILURES", "").split(",") if entry]
    if attempt < len(plan) and plan[attempt][0] == str(dist.get_rank()):
        fail(plan[attempt][1], attempt)
    dist.all_reduce(torch.ones(1))  # the others wait here for the failed rank
    dist.destroy_process_group()


def write(name: str, report: dict[str, object]) -> None:
    path = os.path.join(os.environ["PROBE_DIR"], name)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f)
    os.replace(path + ".tmp", path)  # readers never see half a report


def fail(mode: str, attempt: int) -> None:
    write(f"failed{attempt}.json", {"time": time.time(), "rank": int(os.environ["RANK"])})
    echo_probe.fail(mode)


if __name__ == "__main__":
    main()
