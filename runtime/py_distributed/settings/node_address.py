"""This node's address on a multi-node job, and the network interface that holds it.

Other nodes must reach a node at the address torch advertises for it: the rank-0 node's workers'
store (`--local-addr`, else the host name's FQDN) and every rank's gloo or NCCL sockets (the host
name's address, unless GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME name an interface). Where the host name
resolves to loopback, as on many machines and in containers, remote ranks are told 127.0.0.1 and the
job hangs. So the launcher finds an address off loopback that this machine holds, and pins torch,
gloo and NCCL to it.
"""

import dataclasses
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from py_distributed.cluster import Cluster
from py_distributed.errors import UsageError
from py_distributed.settings.config import TorchrunConfig

# The variables gloo and NCCL read for the interface of their sockets.
IFNAME_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class NodeAddress:
    address: str  # an IP address this machine holds
    interface: str  # the interface holding it

    @property
    def is_loopback(self) -> bool:
        return _ip(self.address).is_loopback


def pinned(config: TorchrunConfig, cluster: Cluster, environ: Mapping[str, str]) -> TorchrunConfig:
    """`config` with this node's address and interface, where other nodes must reach it."""
    if not config.multi_node:
        return config
    if config.local_addr and any(environ.get(name) for name in IFNAME_VARIABLES):
        return config  # the user chose both, e.g. an address behind NAT that no interface holds
    node = find(cluster, config.rdzv_host, config.local_addr)
    return dataclasses.replace(
        config, local_addr=config.local_addr or node.address, socket_ifname=node.interface
    )


def find(cluster: Cluster, rdzv_host: str, local_addr: str) -> NodeAddress:
    """Where the other nodes reach this one. The first of:

    - `local_addr`, the user's word, loopback included (nodes that all run on this machine);
    - the address the cluster description gives this node;
    - the source address of the route to `rdzv_host`;
    - the host name's address, torch's own choice (a pod's host name resolves to the pod's IP).

    The last three count only off loopback where a description names the nodes: Kubeflow gives the
    chief MASTER_ADDR=localhost, and the chief's own rendezvous host is `localhost`.
    """
    if local_addr:
        return _held(local_addr, f"local_addr={local_addr!r}", "set PET_LOCAL_ADDR to one it has")
    given = cluster.this_machine.address
    what = f"{cluster.source} gives this node (rank {cluster.node_rank}) the address {given!r}"
    if given and not all(_ip(a).is_loopback for a in _resolve(given, what)):
        fix = "check this node's rank or task index in it, or set PET_LOCAL_ADDR"
        return _held(given, what, fix)
    routed = _held(_route_source(rdzv_host), f"the route to {rdzv_host!r}", "check the network")
    if not routed.is_loopback or not cluster.described:
        return routed
    hostname = socket.gethostname()
    for address in _resolve(hostname, f"the host name {hostname!r}"):
        found = _holder(address)
        if found and not found.is_loopback:
            return found
    raise UsageError(
        f"cannot tell at which address the other nodes reach this one: {cluster.source} gives it"
        f" {repr(given) if given else 'no address'}, the route to {rdzv_host!r} and the host name"
        f" {hostname!r} lead to loopback; set PET_LOCAL_ADDR to this node's address"
    )


def _held(host: str, what: str, fix: str) -> NodeAddress:
    addresses = _resolve(host, what)
    for address in addresses:
        found = _holder(address)
        if found:
            return found
    raise UsageError(
        f"{what}, which no interface of this machine holds ({', '.join(addresses)}); {fix}"
    )


def _holder(address: str) -> NodeAddress | None:
    """`address` with the interface of this machine that holds it, or None."""
    for name, entries in psutil.net_if_addrs().items():
        for entry in entries:
            if entry.family in _FAMILIES and _ip(entry.address) == _ip(address):
                return NodeAddress(address, name)
    return None


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 scope: "fe80::1%eth0"


def _resolve(host: str, what: str) -> list[str]:
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UsageError(f"{what}, which does not resolve ({error}); check name and DNS") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def _route_source(host: str) -> str:
    """The local address the kernel would send from to reach `host`; a UDP connect sends nothing."""
    for address in _resolve(host, f"the rendezvous host {host!r}"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((address, 9))  # any port: only the route is looked up
            except OSError:
                continue
            return str(probe.getsockname()[0])
    raise UsageError(f"no route to the rendezvous host {host!r}; check the network")
