"""A single-node c10d rendezvous whose stores listen on loopback only, one store per round.

torch elastic's c10d rendezvous starts two TCPStore servers, the rendezvous store and the store the
workers bootstrap their process group from, and a TCPStore listens on every interface whatever host
it is given (pytorch#46800, #173909). The stores carry pickled data, so on a shared host anyone who
reaches them can run code in the job (vllm PR #17591). On one node nothing outside needs them: this
backend hands each TCPStore a socket already bound to 127.0.0.1 (`master_listen_fd`), so the kernel
also picks and holds the port, without a pick-then-bind race (pytorch#126510).
"""

import socket
from datetime import timedelta

# Public API; torch/distributed/__init__.py re-exports it without `__all__`.
from torch.distributed import TCPStore  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous import (
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
    RendezvousStoreInfo,
    rendezvous_handler_registry,
)
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import C10dRendezvousBackend
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import (
    DynamicRendezvousHandler,
    RendezvousTimeout,
)

from py_distributed.config import LOOPBACK, STANDALONE_BACKEND

# Gloo and NCCL bind the address the host name resolves to unless told an interface.
WORKER_ENV = {"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"}


def register() -> None:
    """Makes the standalone backend known to torch elastic in this process, where torchrun runs."""
    rendezvous_handler_registry.register(STANDALONE_BACKEND, _create_handler)


def _store(timeout: timedelta) -> TCPStore:
    listener = socket.create_server((LOOPBACK, 0))
    return TCPStore(
        LOOPBACK,
        listener.getsockname()[1],
        is_master=True,
        multi_tenant=True,
        master_listen_fd=listener.detach(),  # the store owns the socket from now on
        timeout=timeout,
    )


class _LoopbackBackend(C10dRendezvousBackend):
    """torch's c10d backend under this backend's name, which torch elastic checks."""

    @property
    def name(self) -> str:
        return STANDALONE_BACKEND


class _LoopbackHandler(DynamicRendezvousHandler):
    """torch's dynamic rendezvous, with a fresh loopback store for the workers of every round."""

    store_timeout = timedelta(seconds=60)

    def _create_tcp_store_server(self, master_addr: str, master_port: int) -> TCPStore:
        return _store(self.store_timeout)

    def next_rendezvous(self) -> RendezvousInfo:
        # torch keeps one bootstrap store across restarts, while its workers assume a new store
        # per attempt (torch/distributed/rendezvous.py): restarted ranks then read the last
        # round's gloo addresses and fail with "Connection refused".
        info = super().next_rendezvous()
        self._round_store = _store(self.store_timeout)  # alive as long as the round
        return RendezvousInfo(
            info.store,
            info.rank,
            info.world_size,
            RendezvousStoreInfo(LOOPBACK, self._round_store.port),
        )


def _seconds(params: RendezvousParameters, key: str) -> timedelta | None:
    value = params.get_as_int(key)
    return None if value is None else timedelta(seconds=value)


def _create_handler(params: RendezvousParameters) -> RendezvousHandler:
    """As torch's c10d handler, with the same rdzv_conf keys (dynamic_rendezvous.create_handler)."""
    store = _store(_seconds(params, "read_timeout") or timedelta(seconds=60))
    handler: RendezvousHandler = _LoopbackHandler.from_backend(
        params.run_id,
        store,
        _LoopbackBackend(store, params.run_id),
        params.min_nodes,
        params.max_nodes,
        params.local_addr,
        RendezvousTimeout(
            _seconds(params, "join_timeout"),
            _seconds(params, "last_call_timeout"),
            _seconds(params, "close_timeout"),
            _seconds(params, "heartbeat_timeout"),
        ),
        params.get_as_int("keep_alive_interval", 5) or 5,
        params.get_as_int("keep_alive_max_attempt", 3) or 3,
    )
    return handler
