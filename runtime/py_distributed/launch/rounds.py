"""torch's c10d rendezvous across nodes, with a new store for the workers of every round.

torch elastic's c10d handler makes the workers' store once, on the first round's rank-0 node, and
hands it to every later round (`DynamicRendezvousHandler._bootstrap_store_info`), while workers
assume a new store per round (torch/distributed/rendezvous.py): gloo's keys are per process group,
so the ranks of a restarted round read the last round's addresses from it, connect to workers
that are gone, and the job fails ("Connection refused", then "rendezvous was closed") where it
could have gone on without a lost node. Here rank 0 of every round makes a new one, as it does with
TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, but in the launcher, where a later change can bind it.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

# Public API; torch/distributed/__init__.py re-exports it without `__all__`.
from torch.distributed import Store  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous import (
    RendezvousHandler,
    RendezvousInfo,
    RendezvousParameters,
    rendezvous_handler_registry,
)
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import (
    C10dRendezvousBackend,
    create_backend,
)
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import (
    DynamicRendezvousHandler,
    RendezvousTimeout,
)

from py_distributed.launch import facilities
from py_distributed.settings.config import READ_TIMEOUT_DEFAULT

# The backend's name, under which torch elastic finds it: torch's c10d, one workers' store a round.
BACKEND = "c10d-rounds"
# What the launcher runs for torch's own c10d backend across nodes.
REPLACES = "c10d"


def register() -> None:
    """Makes the backend known to torch elastic in this process, where torchrun runs."""
    rendezvous_handler_registry.register(BACKEND, _create_handler)


class _NamedBackend(C10dRendezvousBackend):
    """torch's c10d backend under the name of the backend asked for, which torch elastic checks."""

    def __init__(self, store: Store, run_id: str, name: str) -> None:
        super().__init__(store, run_id)
        self._name = name

    @property
    def name(self) -> str:
        return self._name


_Handler = TypeVar("_Handler", bound="RoundsHandler")


class RoundsHandler(DynamicRendezvousHandler):
    """torch's dynamic rendezvous, whose rank 0 makes a new workers' store every round."""

    @classmethod
    def on(cls: type[_Handler], store: Store, params: RendezvousParameters) -> _Handler:
        """The handler that `params` ask for, its state kept in `store` as torch's c10d keeps it."""
        settings = Settings.of(params)
        handler = cls.from_backend(
            params.run_id,
            store,
            _NamedBackend(store, params.run_id, params.backend),
            params.min_nodes,
            params.max_nodes,
            params.local_addr,
            settings.timeout,
            *settings.keep_alive(),
        )
        return handler  # type: ignore[no-any-return]  # from_backend is unannotated

    def next_rendezvous(self) -> RendezvousInfo:
        self._shared_tcp_store_server = None
        if hasattr(self, "_bootstrap_store_info"):  # torch 2.11 makes a new one only without it
            self._bootstrap_store_info = None
        return super().next_rendezvous()


@dataclass(frozen=True)
class Settings:
    """The rdzv_conf values a c10d handler reads, as torch's reads them
    (dynamic_rendezvous.create_handler); `settings.config` has checked them before any worker
    starts."""

    read_timeout: timedelta
    timeout: RendezvousTimeout
    keep_alive_interval: int
    keep_alive_max_attempt: int

    @classmethod
    def of(cls, params: RendezvousParameters) -> "Settings":
        def seconds(key: str) -> timedelta | None:
            value = params.get_as_int(key)
            return None if value is None else timedelta(seconds=value)

        return cls(
            seconds("read_timeout") or timedelta(seconds=READ_TIMEOUT_DEFAULT),
            RendezvousTimeout(
                seconds("join_timeout"),
                seconds("last_call_timeout"),
                seconds("close_timeout"),
                seconds("heartbeat_timeout"),
            ),
            params.get_as_int("keep_alive_interval") or 5,
            params.get_as_int("keep_alive_max_attempt") or 3,
        )

    def keep_alive(self) -> tuple[int, ...]:
        """`from_backend`'s keep-alive arguments where this torch takes them (2.4: 5 s, 3 tries)."""
        if not facilities.takes_keep_alive():
            return ()
        return (self.keep_alive_interval, self.keep_alive_max_attempt)


def _create_handler(params: RendezvousParameters) -> RendezvousHandler:
    _, store = create_backend(params)  # torch's own: the chief's store, or a client of it
    return RoundsHandler.on(store, params)
