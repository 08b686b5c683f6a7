"""The first failure across nodes: each node posts its own to the round's store, and the report
names the earliest, on every node, with its exit code.

A rank that fails ends its peers on the other nodes a few milliseconds later with gloo's echo
("Connection closed by peer"). Each launcher sees only its own workers (`root_cause`), so each
would name its own echo and exit with its code, 1, and which node's code a scheduler returns
(srun, a Kubernetes Job) is a race. Here every node's launcher posts its first failure: when (its
wall clock, from the monotonic end the finder saw), which node, which rank and how it ended, or
the node its watch found lost (`liveness`). Before it reports, it reads the others' posts, waiting
for every node of the round (a node that crashed never posts: up to the shutdown timeout and 2 s),
and the earliest is the root cause.

Wall clocks differ between nodes: a skew larger than the time from a failure to its echoes (a few
milliseconds on one network) can put an echo first. NTP keeps a cluster's clocks well within a
millisecond of each other; docs/failures.md says how to check.
"""

import contextlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from py_distributed.errors import exit_code_of_worker
from py_distributed.launch.root_cause import Failure

# How long a failed node waits for every other node of the round to post its first failure, beyond
# the shutdown timeout: a node posts once torch elastic has stopped its workers, which may take it
# that long.
WAIT_SECONDS = 2.0


@dataclass(frozen=True)
class Posted:
    """One node's first failure, as it posted it."""

    time_ns: int  # by the posting node's wall clock
    what: str  # "rank 1 exited with code 7 on node rank 1 at 10.0.0.2 (rank 1)", or a lost node
    exit_code: int  # the job's exit code for it
    address: str  # the posting node's
    error: str = ""  # the line that names the error, where the rank left one

    def text(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def of(cls, text: str) -> "Posted":
        return cls(**json.loads(text))


def posted(local: Failure, where: str, address: str) -> Posted:
    """A node's first failure, `local`, as it posts it: `where` says which node it is."""
    ended = local.ended_ns
    # The finder's monotonic end, on the wall clock; torch's timestamp, in seconds, without one.
    when = (
        time.time_ns() - time.monotonic_ns() + ended
        if ended is not None
        else local.timestamp * 10**9
    )
    code = exit_code_of_worker(local.exitcode)
    return Posted(when, f"rank {local.rank} {local.status}{where}", code, address, local.summary)


class Board(Protocol):
    """Where the nodes of one round post their first failures."""

    nodes: int  # how many nodes the round has

    def post(self, text: str) -> None:
        """Posts this node's first failure; a second post changes nothing."""

    def read(self) -> list[str]:
        """Every post of the round so far."""

    def done(self) -> int:
        """Says this node has read the posts it waits for; returns how many nodes have."""

    def read_by(self) -> int:
        """How many nodes have read the posts they wait for."""


def first(board: Board, mine: Posted, wait: float) -> tuple[Posted, set[str] | None]:
    """The earliest of the round's first failures, `mine` posted among them, and the addresses of
    the other nodes that posted (None: the store was out of reach from the start); within `wait`
    seconds, sooner once every node has posted.

    Then it waits (within the same bound) until every node that posted has read the posts, so
    that the store's host, which ends once it has, never takes the store from a node still
    reading. What was read stands where the store went away, or stopped answering (its calls have
    no bound of ours: they run in a thread of their own, left behind).
    """
    posts: list[str] = []
    reached = threading.Event()

    def exchange() -> None:
        with contextlib.suppress(RuntimeError):  # the store's host is gone (DistStoreError)
            board.post(mine.text())
            reached.set()
            deadline = time.monotonic() + wait
            while (read := board.read()) and len(read) < board.nodes:
                posts[:] = read
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            posts[:] = read
            count = board.done()
            while count < len(posts) and time.monotonic() < deadline:
                time.sleep(0.05)
                count = board.read_by()

    thread = threading.Thread(target=exchange, name="first-failure", daemon=True)
    thread.start()
    thread.join(wait + 1)
    found = [mine, *_parsed(list(posts))]
    posted_by = {p.address for p in found} - {mine.address} if reached.is_set() else None
    return min(found, key=lambda p: p.time_ns), posted_by


def _parsed(posts: list[str]) -> list[Posted]:
    """The posts this launcher can read; one of another version's is left out."""
    parsed = []
    for text in posts:
        with contextlib.suppress(ValueError, TypeError):
            parsed.append(Posted.of(text))
    return parsed


def root_cause(
    board: Board,
    mine: Posted,
    wait: float,
    loss: Posted | None,
    others: Mapping[str, str],
    store_lost: str,
) -> Posted:
    """The root cause across nodes: the first failure posted (`first`) or `loss`, a node this node
    found lost. Where the store was out of reach, `store_lost`, the line naming its host lost (""
    where it is this node). Where the first failure says gloo's connection to one of the `others`
    (their labels by address) was closed and that node posted nothing: that node, which crashed,
    its launcher with its workers."""
    found, posted_by = first(board, mine, wait)
    if posted_by is None and store_lost:
        return Posted(mine.time_ns, store_lost, 1, mine.address)
    if loss:
        found = min(found, loss, key=lambda p: p.time_ns)
    for address, label in others.items():
        if posted_by is not None and address not in posted_by and _closed_by(found.error, address):
            lost = f"{label} was lost: it closed its connections ({found.what})"
            return Posted(found.time_ns, lost, 1, address)
    return found


# How gloo names the peer whose connection failed: "Connection closed by peer [10.0.0.3]:23265".
_CLOSED_BY = re.compile(
    r"(?:Connection closed by peer|Connection reset by peer|Connection refused)\D*\[?([0-9.]+)\]?:"
)


def _closed_by(error: str, address: str) -> bool:
    """Whether `error` says the peer at `address` closed or refused the connection."""
    return any(found == address for found in _CLOSED_BY.findall(error))
