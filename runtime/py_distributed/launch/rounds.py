"""torch's c10d rendezvous across nodes, with a new store for the workers of every round.

torch elastic's c10d handler makes the workers' store once, on the first round's rank-0 node, and
hands it to every later round (`DynamicRendezvousHandler._bootstrap_store_info`), while workers
assume a new store per round (torch/distributed/rendezvous.py): gloo's keys are per process group,
so the ranks of a restarted round read the last round's addresses from it, connect to workers
that are gone, and the job fails ("Connection refused", then "rendezvous was closed") where it
could have gone on without a lost node. Here rank 0 of every round makes a new one, as it does with
TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, but in the launcher.

Both stores listen on the node's own address only (`stores`), where torch's listen on every
interface; the rendezvous state is signed with the job's secret where it has one (`signed_state`).
"""

import sys
from collections.abc import Mapping
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
from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import create_backend
from torch.distributed.elastic.rendezvous.dynamic_rendezvous import (
    DynamicRendezvousHandler,
    RendezvousTimeout,
)
from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

from py_distributed.cluster import DEFAULT_PORT
from py_distributed.launch import facilities, liveness, signed_state, stores
from py_distributed.settings.config import READ_TIMEOUT_DEFAULT
from py_distributed.settings.job_secret import VARIABLES, JobSecret

# The backend's name, under which torch elastic finds it: torch's c10d, one workers' store a round.
BACKEND = "c10d-rounds"
# What the launcher runs for torch's own c10d backend across nodes.
REPLACES = "c10d"
# torch's keep-alive interval (s) and attempts, and all of torch 2.4's (it takes no other).
_TORCH_KEEP_ALIVE = (5, 3)


@dataclass(frozen=True)
class _Job:
    name: str  # for messages
    secret: JobSecret | None


# The launch's, for the handler torch elastic creates: its registry takes one creator a backend.
_job = _Job("py_distributed", None)


def register(name: str, secret: JobSecret | None) -> None:
    """Makes the backend known to torch elastic in this process, where torchrun runs, for the
    launch `name` and its secret."""
    global _job
    _job = _Job(name, secret)
    rendezvous_handler_registry.register(BACKEND, _create_handler)


_Handler = TypeVar("_Handler", bound="RoundsHandler")


class RoundsHandler(DynamicRendezvousHandler):
    """torch's dynamic rendezvous, whose rank 0 makes a new workers' store every round, and
    whose rounds `liveness` watches."""

    _watched: tuple[str, float]  # the store's endpoint, and when a silent node is lost
    _store_timeout: timedelta  # rdzv_conf's read_timeout, for the workers' stores
    _public_id: str  # the run id the job is known by, its keys' being the secret's

    @classmethod
    def on(
        cls: type[_Handler],
        store: Store,
        params: RendezvousParameters,
        backend: signed_state.Backend | None = None,
        public_id: str = "",
    ) -> _Handler:
        """The handler that `params` ask for, its state kept in `store` as torch's c10d keeps it,
        through `backend` (default: unsigned), known by `public_id` (default: params')."""
        settings = Settings.of(params)
        handler = cls.from_backend(
            params.run_id,
            store,
            backend or signed_state.Backend(store, params.run_id, name=params.backend),
            params.min_nodes,
            params.max_nodes,
            params.local_addr,
            settings.timeout,
            *settings.keep_alive(),
        )
        handler._watched = (params.endpoint, settings.dead_after())
        handler._store_timeout = settings.read_timeout
        handler._public_id = public_id or params.run_id
        return handler  # type: ignore[no-any-return]  # from_backend is unannotated

    def get_run_id(self) -> str:
        # The workers' TORCHELASTIC_RUN_ID, the user's --rdzv-id: the keys' own stays here.
        return self._public_id

    @property
    def use_agent_store(self) -> bool:
        # Workers use the launcher's store, never TORCH_DISABLE_SHARE_RDZV_TCP_STORE's: rank 0
        # would host one of its own, on every interface. A torch whose rendezvous has no store for
        # the workers (2.4) has them do just that (`facilities.weaker` says so).
        return facilities.shares_agent_store()

    def _create_tcp_store_server(self, master_addr: str, master_port: int) -> Store:
        # At the address the workers are told (--local-addr), and there alone; where no
        # interface holds it (behind NAT), torch's own, on every interface.
        try:
            return stores.listening(master_addr, master_port, self._store_timeout)
        except OSError:
            store: Store = super()._create_tcp_store_server(master_addr, master_port)
            return store

    def next_rendezvous(self) -> RendezvousInfo:
        watch = liveness.current()
        if watch:
            watch.end_round()
        self._shared_tcp_store_server = None
        if hasattr(self, "_bootstrap_store_info"):  # torch 2.11 makes a new one only without it
            self._bootstrap_store_info = None
        info = super().next_rendezvous()
        if watch:
            endpoint, deadline = self._watched
            state = self._state_holder.state
            # Copies first: the keep-alive thread's sync may prune them meanwhile.
            participants = dict(state.participants)
            nodes = {repr(node): (rank, node.addr) for node, rank in participants.items()}
            me = repr(self._this_node)
            board = _Board(
                self._store, self._settings.run_id, state.round, nodes[me][0], len(nodes)
            )
            watch.start_round(_Sight(self), nodes, me, endpoint, deadline, board)
        return info

    def shutdown(self) -> bool:
        if watch := liveness.current():
            watch.end_round()
        return super().shutdown()


class _Board:
    """The round's `first_failure.Board`, in the rendezvous store: a key for each node."""

    def __init__(self, store: Store, run_id: str, round_: int, node_rank: int, nodes: int) -> None:
        self._store, self.nodes, self._node_rank = store, nodes, node_rank
        self._prefix = f"py_distributed.first_failure.{run_id}.{round_}."

    def post(self, text: str) -> None:
        self._store.compare_set(f"{self._prefix}{self._node_rank}", "", text)

    def read(self) -> list[str]:
        keys = [f"{self._prefix}{rank}" for rank in range(self.nodes)]
        return [self._store.get(key).decode() for key in keys if self._store.check([key])]

    def done(self) -> int:
        return int(self._store.add(f"{self._prefix}read", 1))

    def read_by(self) -> int:
        return int(self._store.add(f"{self._prefix}read", 0))


class _Sight:
    """What a handler has read from the store (`liveness.Sight`): torch's own state holder,
    which the agent syncs every second while the workers run (`num_nodes_waiting`), and the
    keep-alive every keep_alive_interval."""

    def __init__(self, handler: DynamicRendezvousHandler) -> None:
        self._holder = handler._state_holder

    def synced(self) -> float:
        # _BackendRendezvousStateHolder's, the holder of every handler made from a backend.
        return float(self._holder._last_sync_time)  # type: ignore[attr-defined]

    def heartbeats(self) -> Mapping[str, object]:
        beats = dict(self._holder.state.last_heartbeats)  # a copy: the keep-alive may prune it
        return {repr(node): beat for node, beat in beats.items()}

    def closed(self) -> bool:
        return bool(self._holder.state.closed)


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
            params.get_as_int("keep_alive_interval") or _TORCH_KEEP_ALIVE[0],
            params.get_as_int("keep_alive_max_attempt") or _TORCH_KEEP_ALIVE[1],
        )

    def dead_after(self) -> float:
        """Seconds without a changed heartbeat after which `liveness` calls a node lost: torch's
        own (interval x attempts, after which it drops the node), where this torch takes those
        settings (2.4: 5 s x 3), and never less than two intervals and 2 s, in which a living
        node's heartbeat is always seen to change."""
        interval, attempts = self.keep_alive_interval, self.keep_alive_max_attempt
        if not facilities.takes_keep_alive():
            interval, attempts = _TORCH_KEEP_ALIVE
        return float(max(interval * attempts, 2 * interval + 2))

    def keep_alive(self) -> tuple[int, ...]:
        """`from_backend`'s keep-alive arguments where this torch takes them (2.4: 5 s, 3 tries)."""
        if not facilities.takes_keep_alive():
            return ()
        return (self.keep_alive_interval, self.keep_alive_max_attempt)


def _create_handler(params: RendezvousParameters) -> RendezvousHandler:
    public_id, secret = params.run_id, _job.secret
    if secret:
        params = _renamed(params, secret.run_id(public_id))
    else:
        print(
            f"{_job.name}: no job secret ({' or '.join(VARIABLES)}): anyone who reaches"
            f" {params.endpoint} can read this job's rendezvous and, writing it, run code on every"
            " node (docs/security.md)",
            file=sys.stderr,
            flush=True,
        )
    store = _rendezvous_store(params)
    backend = signed_state.Backend(
        store, params.run_id, name=BACKEND, secret=secret, public_id=public_id, job=_job.name
    )
    return RoundsHandler.on(store, params, backend, public_id)


def _rendezvous_store(params: RendezvousParameters) -> Store:
    """On the chief, a store on its node address (--local-addr) alone (`stores.hosted`);
    elsewhere torch's client of it. An address that cannot be bound here (behind NAT) leaves it
    to torch, which listens on every interface, and says so."""
    host, port = parse_rendezvous_endpoint(params.endpoint, default_port=DEFAULT_PORT)
    timeout, is_host = Settings.of(params).read_timeout, params.get_as_bool("is_host")
    try:
        hosted = stores.hosted(host, port, params.local_addr or "", timeout, is_host)
    except OSError as error:
        print(
            f"{_job.name}: cannot listen on {params.local_addr}:{port} alone ({error}): the"
            " rendezvous store listens on every interface",
            file=sys.stderr,
            flush=True,
        )
        _, store = create_backend(params)  # torch's own, which hosts it
        return store
    if hosted:
        return hosted
    _, store = create_backend(_renamed(params, params.run_id, is_host=False))  # torch's client
    return store


def _renamed(params: RendezvousParameters, run_id: str, **config: object) -> RendezvousParameters:
    """`params` with `run_id`, and `config` over their rdzv_conf."""
    return RendezvousParameters(
        params.backend,
        params.endpoint,
        run_id,
        params.min_nodes,
        params.max_nodes,
        params.local_addr,
        **{**params.config, **config},
    )
