"""A single-node c10d rendezvous whose stores listen on loopback only, one store per round.

torch elastic's c10d rendezvous starts two TCPStore servers, the rendezvous store and the store the
workers bootstrap their process group from, and a TCPStore listens on every interface whatever host
it is given (pytorch#46800, #173909). The stores carry pickled data, so on a shared host anyone who
reaches them can run code in the job (vllm PR #17591). On one node nothing outside needs them: this
backend hands each TCPStore a socket already bound to 127.0.0.1 (`master_listen_fd`), so the kernel
also picks and holds the port, without a pick-then-bind race (pytorch#126510).
"""

import contextlib
import socket
from collections.abc import Iterator
from datetime import timedelta

# Public API; torch/distributed/__init__.py re-exports it without `__all__`.
from torch.distributed import TCPStore  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous import (
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
    dynamic_rendezvous,
    rendezvous_handler_registry,
)

from py_distributed.launch import facilities
from py_distributed.launch.rounds import RoundsHandler, Settings

# The backend's name, under which torch elastic finds it, and where it listens.
BACKEND = "c10d-loopback"
ADDRESS = "127.0.0.1"
INTERFACE = "lo"  # for gloo and NCCL, which would otherwise take the host name's interface


def register() -> None:
    """Makes the standalone backend known to torch elastic in this process, where torchrun runs."""
    rendezvous_handler_registry.register(BACKEND, _create_handler)


def _store(timeout: timedelta) -> TCPStore:
    listener = socket.create_server((ADDRESS, 0))
    with listener:
        try:
            store = _listening(listener, timeout)
        except NotImplementedError:  # torch 2.4's libuv store takes no socket; its own one does
            store = _listening(listener, timeout, use_libuv=False)
        listener.detach()  # the store owns the socket from now on
    return store


def _listening(listener: socket.socket, timeout: timedelta, **backend: bool) -> TCPStore:
    return TCPStore(
        ADDRESS,
        listener.getsockname()[1],
        is_master=True,
        multi_tenant=True,
        master_listen_fd=listener.fileno(),
        timeout=timeout,
        **backend,
    )


class _LoopbackHandler(RoundsHandler):
    """torch's dynamic rendezvous, with a new loopback store for the workers of every round."""

    store_timeout: timedelta  # rdzv_conf's read_timeout, set where the handler is made

    @property
    def use_agent_store(self) -> bool:
        # Workers must use the launcher's loopback store: with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
        # rank 0 would host a store of its own, on every interface. A torch whose rendezvous has
        # no store for the workers (2.4) has them do just that (`facilities.weaker` says so).
        return facilities.shares_agent_store()

    def _create_tcp_store_server(self, master_addr: str, master_port: int) -> TCPStore:
        return _store(self.store_timeout)

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
    settings = Settings.of(params)
    handler = _LoopbackHandler.on(_store(settings.read_timeout), params)
    handler.store_timeout = settings.read_timeout
    return handler
