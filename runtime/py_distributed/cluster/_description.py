"""What every cluster source builds and shares: `Machine`, `Cluster`, and their checked parsing.

A private module so that the package's `__init__`, which picks among the sources, and each source,
which builds a `Cluster`, both import it without importing each other. Every value is parsed by
`grammar`; the wrappers here only turn its ValueError into the one-line `UsageError` a person sees.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from py_distributed import grammar
from py_distributed.errors import UsageError

SINGLE_MACHINE = "single machine"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Machine:
    """One node of the job: its address as the other nodes reach it, and its accelerators."""

    address: str  # "" where the description does not say
    num_accelerators: int | None = None  # None where the description does not say


@dataclass(frozen=True)
class Cluster:
    """This job's nodes as its scheduler describes them; the seed's `machine_from_env()` value."""

    source: str  # where the description came from, for messages: "TF_CONFIG", "SLURM", ...
    chief: Machine  # node 0, which hosts the rendezvous
    num_workers: int  # the nodes besides the chief
    node_rank: int  # this node's place: 0 is the chief
    this_machine: Machine
    port: int | None = None  # the rendezvous port the description implies, if any
    job_id: str | None = None  # stable for the job's lifetime, so a restarted node rejoins

    @property
    def num_nodes(self) -> int:
        return 1 + self.num_workers

    @property
    def is_chief(self) -> bool:
        return self.node_rank == 0

    @property
    def described(self) -> bool:
        """Whether a scheduler's description (or explicit arguments) named the nodes."""
        return self.source != SINGLE_MACHINE


def cluster(
    source: str,
    addresses: Sequence[str],
    node_rank: int,
    *,
    job_id: str | None,
    port: int | None = None,
    num_accelerators: int | None = None,
) -> Cluster:
    """A cluster whose every node's "HOST[:PORT]" is known; the chief's port is the rendezvous'."""
    endpoints = [parsed(grammar.endpoint, address, f"{source} node") for address in addresses]
    hosts = [host for host, _ in endpoints]
    return Cluster(
        source,
        Machine(hosts[0], num_accelerators),
        len(hosts) - 1,
        node_rank,
        Machine(hosts[node_rank], num_accelerators),
        endpoints[0][1] if port is None else port,
        job_id,
    )


def parsed(rule: Callable[[str], _T], value: str, where: str) -> _T:
    """`rule(value)`, a `grammar` function; its ValueError, which says the fix, becomes a one-line
    UsageError naming `where` the value came from: "MASTER_PORT='x': use a port in 1..65535"."""
    try:
        return rule(value)
    except ValueError as error:
        raise UsageError(f"{where}={value!r}: {error}") from None


def index(value: str, count: int, variable: str) -> int:
    """This node's index among `count` nodes, as `variable` gives it."""
    if not (grammar.is_number(value) and int(value) < count):
        raise UsageError(f"{variable}={value!r}: use an int in 0..{count - 1}")
    return int(value)


def digest(prefix: str, parts: Sequence[str]) -> str:
    """A run id all nodes derive alike from what they share; torch elastic puts it in file names."""
    return f"{prefix}-{hashlib.sha256(json.dumps(list(parts)).encode()).hexdigest()[:16]}"
