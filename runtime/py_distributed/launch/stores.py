"""TCPStore servers that listen on one address, never on every interface.

A TCPStore server listens on every interface whatever host it is given (pytorch#46800, #173909),
and what it holds is the job's control plane: torch elastic's pickled rendezvous state, the
workers' bootstrap addresses. Handed a socket already bound to one address (`master_listen_fd`), it
listens there alone; the kernel also picks and holds a port 0, without torch's pick-then-bind race
(pytorch#126510). Both the rendezvous store and the workers' store of every round come from here.
"""

import socket
from datetime import timedelta

# Public API; torch/distributed/__init__.py re-exports it without `__all__`.
from torch.distributed import TCPStore  # type: ignore[attr-defined]


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
