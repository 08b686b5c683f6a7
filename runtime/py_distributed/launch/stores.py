"""TCPStore servers that listen on one address, never on every interface, and which node hosts
the rendezvous's.

A TCPStore server listens on every interface whatever host it is given (pytorch#46800, #173909),
and what it holds is the job's control plane: torch elastic's pickled rendezvous state, the
workers' bootstrap addresses. Handed a socket already bound to one address (`master_listen_fd`), it
listens there alone; the kernel also picks and holds a port 0, without torch's pick-then-bind race
(pytorch#126510). Both the rendezvous store and the workers' store of every round come from here.
"""

import errno
import ipaddress
import socket
from datetime import timedelta

# Public API; torch/distributed/__init__.py re-exports it without `__all__`.
from torch.distributed import TCPStore  # type: ignore[attr-defined]
from torch.distributed.elastic.rendezvous.utils import _matches_machine_hostname


def hosted(
    host: str, port: int, local_addr: str, timeout: timedelta, is_host: bool | None
) -> TCPStore | None:
    """The rendezvous store at `host`:`port`, listening on `local_addr` alone, where this node
    hosts it; None where another does, the port being taken here by another node of the job.

    The host is whichever machine `host` names, as torch's c10d decides
    (c10d_rendezvous_backend._create_tcp_store), `is_host` from rdzv_conf overriding; of several
    nodes on it, the one whose address `host` names, or where `host` is loopback (Kubeflow tells
    its chief `localhost`), any of them off loopback. Raises OSError where `local_addr` cannot be
    bound here.
    """
    if is_host is None:
        is_host = _matches_machine_hostname(host) and _named(host, local_addr)
    if not is_host:
        return None
    try:
        return listening(local_addr or host, port, timeout)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return None
        raise


def _named(host: str, local_addr: str) -> bool:
    try:
        ends = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)}
        mine = ipaddress.ip_address(local_addr)
    except (OSError, ValueError):  # no address to compare: torch's decision alone
        return True
    return mine in ends or (all(end.is_loopback for end in ends) and not mine.is_loopback)


def listening(address: str, port: int, timeout: timedelta) -> TCPStore:
    """A multi-tenant store server on `address`:`port` (0: a free port), as torch's c10d makes
    its own (multi_tenant: a worker in this process that asks for the same port shares it).
    Raises OSError when the port is taken."""
    listener = socket.create_server((address, port), family=_family(address))
    with listener:
        try:
            store = _listening(listener, address, timeout)
        except NotImplementedError:  # torch 2.4's libuv store takes no socket; its own one does
            store = _listening(listener, address, timeout, use_libuv=False)
        listener.detach()  # the store owns the socket from now on
    return store


def _listening(
    listener: socket.socket, address: str, timeout: timedelta, **backend: bool
) -> TCPStore:
    return TCPStore(
        address,
        listener.getsockname()[1],
        is_master=True,
        multi_tenant=True,
        master_listen_fd=listener.fileno(),
        timeout=timeout,
        **backend,
    )


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
