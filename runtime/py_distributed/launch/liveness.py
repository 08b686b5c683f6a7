"""A deadline on the rendezvous' keep-alives, which torch elastic keeps and never acts on.

Every agent writes a heartbeat into the rendezvous state every keep_alive_interval (5 s), and torch
drops a node whose heartbeat is keep_alive_interval x keep_alive_max_attempt old (15 s) from the
rendezvous (`_BackendRendezvousStateHolder._sanitize`), and that is all (pytorch#111646): the other
nodes' workers wait in a collective for the lost node's ranks until gloo's 30 minutes pass (NCCL's
10), and where the lost node held the store (a frozen chief, a cut link), every agent blocks in
`TCPStore::doWait`, which has no timeout and outlives SIGTERM.

`Watch` looks once a second at what the rendezvous handler has already read from the store, so it
adds no traffic, and measures every age by this node's own monotonic clock: a heartbeat counts as
long as it changes, whatever time it says, so clock skew adds no loss of its own (torch's drop of a
node whose heartbeat looks 15 s old by the reading node's clock still counts as one):

- a node whose heartbeat has not changed for the deadline (or that torch dropped) is lost: this
  node stops its workers, which torch elastic takes as a failure. It restarts the round without the
  lost node while max_restarts lasts (nnodes=MIN:MAX), or the job ends, the lost node named as the
  root cause (`first`).
- no read of the store for the deadline: the store's host is lost, or this node is cut off from
  it, and so is the job (torch elastic cannot go on without the store's host, pytorch#67742). Its
  agent may never return: this node SIGKILLs its workers and ends itself, exit code 1.
"""

import contextlib
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from py_distributed.launch import first_failure
from py_distributed.launch.root_cause import Failure
from py_distributed.launch.workers import Workers

# How often the watch looks; a node is declared lost at most this much after its deadline.
_LOOK_SECONDS = 1.0


@dataclass(frozen=True)
class Node:
    """A node of the round, as a person reads it."""

    node_rank: int
    address: str
    ranks: range  # the global ranks it holds, assuming every node runs as many as this one

    def label(self) -> str:
        first, last = self.ranks[0], self.ranks[-1]
        held = f"rank {first}" if first == last else f"ranks {first}-{last}"
        return f"node rank {self.node_rank} at {self.address} ({held})"


@dataclass(frozen=True)
class Loss:
    """What the watch found: a node lost, or the store out of reach."""

    node: Node | None  # None: the store's host, which is not among the round's nodes
    silent: float  # seconds without a heartbeat (or a read of the store)
    store: str  # the store's address, where it is the store that went silent; "" otherwise
    since_ns: int  # when the silence began, by the wall clock

    def line(self) -> str:
        if self.store:
            host = f"its host, {self.node.label()}," if self.node else "its host"
            return (
                f"the rendezvous store at {self.store} has not answered for {self.silent:.0f} s:"
                f" {host} is down, or this node is cut off from it; the job cannot go on without"
                " the store's host"
            )
        assert self.node is not None
        return f"{self.node.label()} was lost: no keep-alive for {self.silent:.0f} s"


def _loss(node: Node | None, silent: float, store: str) -> Loss:
    return Loss(node, silent, store, time.time_ns() - int(silent * 1e9))


class Sight(Protocol):
    """What a rendezvous handler has read from the store, for `Round.look`."""

    def synced(self) -> float:
        """When the handler last read the store, by time.monotonic()."""

    def heartbeats(self) -> Mapping[str, object]:
        """Each node's last heartbeat as read, by the handler's own names for nodes."""

    def closed(self) -> bool:
        """Whether a node has closed the rendezvous: it has ended, and so will the others."""


class Round:
    """One round's nodes, and when each was last seen alive, by this node's clock."""

    def __init__(
        self,
        sight: Sight,
        nodes: Mapping[str, Node],  # the other nodes of the round
        store: str,  # the store's address
        store_host: Node | None,
        deadline: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sight, self._nodes, self._deadline = sight, nodes, deadline
        self._store, self._store_host, self._clock = store, store_host, clock
        now = clock()
        self._seen = dict.fromkeys(nodes, now)  # when its heartbeat last changed
        self._beats = dict(sight.heartbeats())
        self._looked = self._since = now

    def look(self) -> Loss | None:
        """The loss found now, if any. A node's heartbeat is judged as of this node's last read of
        the store, so that a silent store is found as such, not as a silent node; a closed
        rendezvous (a node ended, and so will the others) is no loss."""
        now = self._clock()
        if now - self._looked > self._deadline / 2:  # this node itself stood still (SIGSTOP)
            self._since = now
            self._seen = dict.fromkeys(self._seen, now)
        self._looked = now
        synced = max(self._sight.synced(), self._since)
        if self._sight.closed():
            return None
        if now - synced > self._deadline:
            return _loss(self._store_host, now - synced, self._store)
        beats = self._sight.heartbeats()
        for key, node in self._nodes.items():
            if key in beats and beats[key] != self._beats.get(key):
                self._seen[key] = synced
            if synced - self._seen[key] > self._deadline:
                return _loss(node, now - self._seen[key], "")
        self._beats = dict(beats)
        return None


class Watch:
    """The liveness of one launch's rounds: a thread that looks at the round under way."""

    def __init__(
        self, workers: Workers, local_workers: int, *, name: str, leftovers: Sequence[str]
    ) -> None:
        self._workers, self._local_workers = workers, local_workers
        self._name, self._leftovers = name, leftovers
        self._lock = threading.Lock()
        self._round: Round | None = None
        self._cause: Loss | None = None
        self._board: first_failure.Board | None = None
        self._me: Node | None = None
        self._others: list[Node] = []
        self._store_host: Node | None = None  # the latest round's, where it is another node
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start_round(
        self,
        sight: Sight,
        nodes: Mapping[str, tuple[int, str]],  # node rank and address, by the handler's names
        me: str,
        store: str,  # the store's "host:port"
        deadline: float,
        board: first_failure.Board,
    ) -> None:
        """Watches a round that has just formed, unless this node is its only one."""
        size = self._local_workers
        everyone = {
            key: Node(rank, address, range(rank * size, (rank + 1) * size))
            for key, (rank, address) in nodes.items()
        }
        others = {key: node for key, node in everyone.items() if key != me}
        with self._lock:
            self._forget()
        if not others:
            return
        host = _address_of(store.rpartition(":")[0])
        store_host = next((n for n in others.values() if n.address == host), None)
        with self._lock:
            self._round = Round(sight, others, store, store_host, deadline)
            self._board, self._me, self._store_host = board, everyone[me], store_host
            self._others = list(others.values())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
                self._thread.start()

    def _forget(self) -> None:
        """Drops what it knew of the latest round; called with the lock held."""
        self._round = self._cause = self._board = self._me = self._store_host = None
        self._others = []

    def store_lost(self) -> str:
        """Where the store's host was another node of the latest round, the line that names it
        lost, for a store that closed its connection; "" otherwise."""
        host = self._store_host
        return (
            f"{host.label()} was lost: its rendezvous store closed the connection" if host else ""
        )

    def lost(self) -> str:
        """The line of the node this node's watch found lost in the latest round, if any: a job
        whose next round never formed (a fixed nnodes waits join_timeout for it) names it."""
        cause = self._cause
        return cause.line() if cause else ""

    def mine(self, local: Failure) -> first_failure.Posted:
        """This node's first failure, `local`, as it posts it."""
        me = self._me
        return first_failure.posted(
            local, f" on {me.label()}" if me else "", me.address if me else ""
        )

    def first(self, mine: first_failure.Posted, wait: float) -> first_failure.Posted:
        """The round's root cause across nodes (`first_failure.root_cause`), with the loss this
        node's watch found; within `wait` seconds."""
        with self._lock:
            board, cause, others, me = self._board, self._cause, self._others, self._me
        if not board:
            return mine
        loss = _posted(cause, me) if cause and not cause.store else None
        labels = {n.address: n.label() for n in others}
        return first_failure.root_cause(board, mine, wait, loss, labels, self.store_lost())

    def end_round(self) -> None:
        """Stops watching the round; its nodes and board stay, for the report of its failure."""
        with self._lock:
            self._round = None

    def close(self) -> None:
        self.end_round()
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(_LOOK_SECONDS):
            try:
                self._look()
            except Exception as error:  # noqa: BLE001 - the watch goes on; the job is not its
                self._say(f"liveness: {type(error).__name__}: {error}")

    def _look(self) -> None:
        with self._lock:
            loss = self._round.look() if self._round and not self._cause else None
            board, me = self._board, self._me
        if loss and loss.store:
            self._abandon(loss)
        elif loss:
            # Found while no worker runs (starting, or being stopped), it is found again at the
            # next look, until there are workers to stop or the round ends.
            if not self._workers.kill(self._workers.watched()):
                return
            with self._lock:
                self._cause = loss
            self._say(f"error: {loss.line()}; stopped this node's workers")
            if board:
                with contextlib.suppress(RuntimeError):  # the store's host is gone too
                    board.post(_posted(loss, me).text())

    def _abandon(self, loss: Loss) -> None:
        """Ends this launcher, whose agent waits on the store and may never return."""
        self._say(f"error: {loss.line()}; stopping this node")
        self._workers.kill(self._workers.watched())
        for path in self._leftovers:
            shutil.rmtree(path, ignore_errors=True)
        os._exit(1)

    def _say(self, line: str) -> None:
        print(f"{self._name}: {line}", file=sys.stderr, flush=True)


_current: Watch | None = None


@contextlib.contextmanager
def watching(watch: Watch) -> Iterator[Watch]:
    """Inside the block, the rendezvous handlers of this process report their rounds to `watch`."""
    global _current
    _current = watch
    try:
        yield watch
    finally:
        _current = None
        watch.close()


def current() -> Watch | None:
    """The watch of the launch under way in this process, if any."""
    return _current


def _posted(loss: Loss, me: Node | None) -> first_failure.Posted:
    """The loss as this node's (`me`) first failure, as of when the lost node went silent."""
    return first_failure.Posted(loss.since_ns, loss.line(), 1, me.address if me else "")


def _address_of(host: str) -> str:
    """The IPv4 address `host` names, "" where it names none (the store is then labelled by its
    address alone)."""
    try:
        return socket.gethostbyname(host)
    except OSError:
        return ""
