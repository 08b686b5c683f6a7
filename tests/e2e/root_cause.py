"""A torchrun script in which one rank fails while its peers wait for it in a collective.

The peers then fail too, a few milliseconds later, with only an echo of the first failure (gloo's
"Connection closed by peer"): the case where a launcher that orders failures by whole seconds
blames the wrong rank.

PROBE_FAILURES (tests/harness/probe.py's grammar): on attempt N, the Nth entry's rank fails by its
mode once every rank is up; attempts past the list succeed. Just before failing it writes the
wall-clock time to $PROBE_DIR/failed<N>.json; every rank writes up<RANK>.json once all are up.
PROBE_DEAF_RANK=R: rank R ignores SIGTERM and never returns.
"""

import time

import torch
import torch.distributed as dist
from harness import probe


def main() -> None:
    deaf = probe.deafen()
    dist.init_process_group("gloo")
    token = torch.ones(1)  # alive until the group is destroyed: see ranks_pytest.py's fixture
    dist.all_reduce(token)  # every rank is up
    rank = dist.get_rank()
    probe.write_report(f"up{rank}.json", {"time": time.time()})
    if deaf:
        probe.never_return()
    mode = probe.planned(rank)
    if mode is not None:
        probe.write_report(f"failed{probe.attempt()}.json", {"time": time.time(), "rank": rank})
        probe.fail(mode)
    dist.all_reduce(token)  # the others wait here for the failed rank
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
