"""Signing benchmark (issue 23): what the job's secret costs a c10d rendezvous.

    tools/setup.sh python bench/rendezvous_signing.py [--rounds N]

Runs rendezvous rounds on a real TCPStore on 127.0.0.1, in this process, through three handlers
of the same settings: torch's own c10d (what torchrun runs), the launcher's `c10d-rounds` without
a secret, and with one (every state it writes signed, every state it reads checked before it is
unpickled). Two kinds of round, the three taking turns block by block:

- one node, round after round: the rendezvous's own work (its store traffic, the state pickled,
  signed, checked) with nothing to wait for. The median round: about one TCPStore in 25 takes
  5 s to start, in torch 2.13 whatever its options, and both of ours start one a round;
- three nodes, one thread each, joining together: a rendezvous as a job sees it, where torch's
  one-second polls dominate.

Both skip torch's random wait before a node's first round (`loopback._unskewed`), noise that
would drown what is measured.

Target: signed at most 1.05x unsigned, in both. Writes bench/results/rendezvous_signing.md.
"""

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))

from torch.distributed.elastic.rendezvous import (  # noqa: E402
    RendezvousHandler,
    RendezvousParameters,
    rendezvous_handler_registry,
)

from py_distributed.launch import loopback, rounds, stores  # noqa: E402
from py_distributed.settings.job_secret import JobSecret  # noqa: E402

TARGET = 1.05
SECRET = JobSecret(b"a benchmark secret of 32 bytes..")
VARIANTS = ("torch c10d", "unsigned", "signed")
_ids = iter(range(1_000_000))


def handler(variant: str, port: int, nodes: int, run_id: str) -> RendezvousHandler:
    backend = "c10d" if variant == "torch c10d" else rounds.BACKEND
    rounds.register("bench", SECRET if variant == "signed" else None)
    params = RendezvousParameters(
        backend=backend,
        endpoint=f"127.0.0.1:{port}",
        run_id=run_id,
        min_nodes=nodes,
        max_nodes=nodes,
        local_addr="127.0.0.1",
        is_host=False,  # the bench's own store, below, is the chief's
    )
    return rendezvous_handler_registry.create_handler(params)


def one_node(variant: str, port: int, rounds_: int) -> list[float]:
    """Seconds of each of `rounds_` rounds of one node in a row."""
    made = handler(variant, port, 1, f"bench-{next(_ids)}")
    times = []
    for _ in range(rounds_):
        started = time.perf_counter()
        made.next_rendezvous()
        times.append(time.perf_counter() - started)
    made.shutdown()
    return times


def three_nodes(variant: str, port: int) -> list[float]:
    """Seconds from three nodes' start until each is in the round."""
    run_id = f"bench-{next(_ids)}"
    made = [handler(variant, port, 3, run_id) for _ in range(3)]
    threads = [threading.Thread(target=h.next_rendezvous) for h in made]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for h in made:
        h.shutdown()
    return [elapsed]


def turns(blocks: int, measure: Callable[[str], list[float]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    # Without torch's random wait of 0 to 0.3 s before a node's first round, the same for all.
    with loopback._unskewed():
        for block in range(blocks):
            for variant in VARIANTS[block % 3 :] + VARIANTS[: block % 3]:
                times[variant] += measure(variant)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=100, help="one-node rounds a block")
    parser.add_argument("--blocks", type=int, default=9)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    store = stores.listening("127.0.0.1", 0, timedelta(seconds=30))
    kinds = {
        f"one node, {args.rounds} rounds a block": turns(
            args.blocks, lambda v: one_node(v, store.port, args.rounds)
        ),
        "three nodes joining together": turns(args.blocks, lambda v: three_nodes(v, store.port)),
    }
    lines = [
        "# Signing benchmark",
        "",
        f"Rendezvous rounds on a TCPStore on 127.0.0.1, {args.blocks} blocks, the three handlers"
        " taking turns block by block; the median round (bench/rendezvous_signing.py).",
        "",
        "| rounds | torch c10d | unsigned | signed | signed / unsigned | signed / torch |",
        "|---|---|---|---|---|---|",
    ]
    verdicts = []
    for kind, times in kinds.items():
        torch_c10d, unsigned, signed = (statistics.median(times[v]) for v in VARIANTS)
        ratio = signed / unsigned
        verdicts.append(ratio <= TARGET)
        lines.append(
            f"| {kind} | {torch_c10d * 1e3:.2f} ms | {unsigned * 1e3:.2f} ms |"
            f" {signed * 1e3:.2f} ms | {ratio:.3f}x | {signed / torch_c10d:.3f}x |"
        )
    verdict = "PASS" if all(verdicts) else "FAIL"
    lines += ["", f"Signed at most {TARGET}x unsigned in both: {verdict}.", ""]
    text = "\n".join(lines)
    print(text)
    (args.out / "rendezvous_signing.md").write_text(text, encoding="utf-8")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
