"""This node's address on a multi-node job, and the network interface that holds it.

Other nodes must reach a node at the address torch advertises for it: the rank-0 node's workers'
store (`--local-addr`, else the host name's FQDN) and every rank's gloo or NCCL sockets (the host
name's address, unless GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME name an interface). Where the host name
resolves to loopback, as on many machines and in containers, remote ranks are told 127.0.0.1 and the
job hangs. So the launcher takes the address the cluster description gives this node, or else the
one its route to the rendezvous host leaves from, and pins torch, gloo and NCCL to it.
"""

import ipaddress
import socket
from dataclasses import dataclass

import psutil

from py_distributed.cluster import Cluster
from py_distributed.errors import UsageError

# The variables gloo and NCCL read for the interface of their sockets.
IFNAME_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


@dataclass(frozen=True)
class NodeAddress:
    address: str  # an IP address this machine holds
    interface: str  # the interface holding it


def find(cluster: Cluster, rdzv_host: str, local_addr: str) -> NodeAddress:
    """Where the other nodes reach this one: `local_addr` if given, else the address the cluster
    description gives this node, else the source address of the route to `rdzv_host`."""
    if local_addr:
        return _held(local_addr, f"local_addr={local_addr!r}", "set PET_LOCAL_ADDR to one it has")
    given = cluster.this_machine.address
    if given:
        return _held(
            given,
            f"{cluster.source} gives this node (rank {cluster.node_rank}) the address {given!r}",
            "check this node's rank or task index in it, or set PET_LOCAL_ADDR",
        )
    return _held(_route_source(rdzv_host), f"the route to {rdzv_host!r} leaves from", "")


def _held(host: str, what: str, fix: str) -> NodeAddress:
    interfaces = {
        _ip(entry.address): name
        for name, entries in psutil.net_if_addrs().items()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    }
    addresses = _resolve(host, what)
    for address in addresses:
        if _ip(address) in interfaces:
            return NodeAddress(address, interfaces[_ip(address)])
    raise UsageError(
        f"{what}, which no interface of this machine holds ({', '.join(addresses)}); {fix}"
    )


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
