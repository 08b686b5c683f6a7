"""A single-node c10d rendezvous whose stores listen on loopback only, one store per round.

torch elastic's c10d rendezvous starts two TCPStore servers, the rendezvous store and the store the
workers bootstrap their process group from, and a TCPStore listens on every interface whatever host
it is given (pytorch#46800, #173909). The stores carry pickled data, so on a shared host anyone who
reaches them can run code in the job (vllm PR #17591). On one node nothing outside needs them: this
backend's stores listen on 127.0.0.1 (`stores`), on a port the kernel picks.
"""

import contextlib
from collections.abc import Iterator

from torch.distributed.elastic.rendezvous import (
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
    dynamic_rendezvous,
    rendezvous_handler_registry,
)

from py_distributed.launch import stores
from py_distributed.launch.rounds import RoundsHandler, Settings

# The backend's name, under which torch elastic finds it, and where it listens.
BACKEND = "c10d-loopback"
ADDRESS = "127.0.0.1"
INTERFACE = "lo"  # for gloo and NCCL, which would otherwise take the host name's interface


def register() -> None:
    """Makes the standalone backend known to torch elastic in this process, where torchrun runs."""
    rendezvous_handler_registry.register(BACKEND, _create_handler)


class _LoopbackHandler(RoundsHandler):
    """torch's dynamic rendezvous, with a new loopback store for the workers of every round (its
    --local-addr is loopback)."""

    def next_rendezvous(self) -> RendezvousInfo:
        with _unskewed():
            return super().next_rendezvous()


@contextlib.contextmanager
def _unskewed() -> Iterator[None]:
    """Skips the random wait of 0 to 0.3 s before a first round, by which torch skews the joins of
    many nodes to spare their backend (DynamicRendezvousHandler.next_rendezvous): one node has
    nothing to skew, and the wait would be a tenth of a warm start. torch's one-second polls stay.
    (torch 2.15 also waits a range as the back-off of its compare-and-set, which only
    cas_backoff_max_seconds > 0 turns on: this handler leaves it at 0.)
    """
    # The module's own name for rendezvous/utils.py's _delay, which it calls for both waits.
    delay = getattr(dynamic_rendezvous, "_delay", None)
    if delay is None:  # a torch without it: its rendezvous as it is
        yield
        return

    def unskewed(seconds: float | tuple[float, float]) -> None:
        if not isinstance(seconds, tuple):  # a range is the skew
            delay(seconds)

    dynamic_rendezvous._delay = unskewed  # type: ignore[attr-defined]
    try:
        yield
    finally:
        dynamic_rendezvous._delay = delay  # type: ignore[attr-defined]


def _create_handler(params: RendezvousParameters) -> RendezvousHandler:
    store = stores.listening(ADDRESS, 0, Settings.of(params).read_timeout)
    return _LoopbackHandler.on(store, params)
