"""What this torch offers of what the launcher uses: each facility looked for, never a version.

The launcher runs torchrun in-process and leans on a few of torch elastic's flags and internals
(docs/design.md, "torch internals", lists every one with the versions checked). Each function here
looks for one. Where this torch lacks it, the caller does what that torch does, and `weaker` says
in one line per facility what the launch loses, printed under the banner. A torch older than
MINIMUM lacks what the launcher cannot do without: `check_minimum` stops the launch first.
"""

import dataclasses
import functools
import importlib.metadata
import inspect
import re
from collections.abc import Collection

from py_distributed.errors import UsageError
from py_distributed.settings.config import TorchrunConfig

MINIMUM = (2, 4)
# torch elastic's grace between a stop signal and SIGKILL where it has no --shutdown-timeout
# (agent/server/api.py, SimpleElasticAgent._shutdown: timeout=30).
TORCH_FIXED_SHUTDOWN_SECONDS = 30


def version() -> str:
    """The installed torch's version, read without importing torch; "" where pip did not install
    it (the import then tells)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


def check_minimum(found: str | None = None) -> None:
    """Raises UsageError, one line naming the version found (default: the installed one) and the
    one needed, for a torch older than MINIMUM: it fails deep in torch elastic otherwise, or starts
    workers it cannot stop."""
    found = version() if found is None else found
    numbers = re.match(r"(\d+)\.(\d+)", found)
    if numbers and (int(numbers[1]), int(numbers[2])) < MINIMUM:
        needed = ".".join(map(str, MINIMUM))
        raise UsageError(
            f"torch {found} is older than {needed}, the oldest the launcher supports;"
            f" install torch>={needed}"
        )


@functools.cache
def launch_config_fields() -> frozenset[str]:
    """The fields of torch elastic's LaunchConfig (2.4 has no signals_to_handle, 2.11 no
    shutdown_timeout)."""
    from torch.distributed.launcher.api import LaunchConfig

    return frozenset(field.name for field in dataclasses.fields(LaunchConfig))


@functools.cache
def shares_agent_store() -> bool:
    """Whether torch's c10d rendezvous hosts the workers' store in the agent
    (`_create_tcp_store_server`), which the launcher binds to the node's address (`stores`);
    without it, rank 0's worker hosts a store of its own, on every interface."""
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import DynamicRendezvousHandler

    return hasattr(DynamicRendezvousHandler, "_create_tcp_store_server")


@functools.cache
def takes_keep_alive() -> bool:
    """Whether `DynamicRendezvousHandler.from_backend` takes the keep-alive settings."""
    from torch.distributed.elastic.rendezvous.dynamic_rendezvous import DynamicRendezvousHandler

    return (
        "keep_alive_interval" in inspect.signature(DynamicRendezvousHandler.from_backend).parameters
    )


def weaker(flags: Collection[str], config: TorchrunConfig, shutdown_seconds: float) -> list[str]:
    """One line per facility this launch would use and this torch lacks, saying what is weaker;
    `flags` are torchrun's, as its parser has them."""
    lines = []
    if "--shutdown-timeout" not in flags:
        lines.append(
            f"on a stop signal torch gives the workers its fixed {TORCH_FIXED_SHUTDOWN_SECONDS} s"
            f" to end, not shutdown_timeout (no --shutdown-timeout); the launcher's"
            f" {shutdown_seconds:g} s holds once one of them has ended"
        )
    if "signals_to_handle" not in launch_config_fields():
        lines.append(
            "no stacks of the ranks on a stop signal: torch takes SIGTERM, SIGINT and SIGHUP itself"
            " (no LaunchConfig.signals_to_handle)"
        )
    if config.rdzv_backend == "c10d" and not shares_agent_store():
        where = "loopback" if config.standalone else "this node's address"
        lines.append(
            f"the workers' store is rank 0's, on every interface, not the launcher's on {where}"
            " (no shared agent store)"
        )
    keep_alive = ("keep_alive_interval=", "keep_alive_max_attempt=")
    if not takes_keep_alive() and any(key in config.rdzv_conf for key in keep_alive):
        lines.append("rdzv_conf's keep_alive_interval and keep_alive_max_attempt are ignored")
    return [f"torch {version()}: {line}" for line in lines]
