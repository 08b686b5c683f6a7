"""A worker that fails, or waits for the one that fails and then dies of its echo, without torch.

Started by torch elastic as `python -u echo_probe.py`, it reads RANK, WORLD_SIZE and
TORCHELASTIC_RESTART_COUNT. PROBE_FAILURES is as in root_cause.py: on attempt N the Nth entry's
rank fails by its mode (exit7, raise, os_exit3, sigkill). That rank listens on loopback and writes
its port to $PROBE_DIR/port<N>; the others connect and block in a read, as gloo's peers block in a
collective: when it dies, the kernel closes their connections and they fail a moment later with
"Connection closed by peer", the echo that torch elastic's whole-second order mistakes for a cause.
As gloo's, the connections live until the process ends, and the worker ends as every
py_distributed worker does (`py_distributed.worker.run.run`).
"""

import os
import signal
import socket
import sys
import time

from py_distributed.worker.run import run

# Open until the process ends, as a process group's sockets are.
_CONNECTIONS: list[socket.socket] = []


def main() -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    attempt = int(os.environ["TORCHELASTIC_RESTART_COUNT"])
    plan = [entry.split(":") for entry in os.environ["PROBE_FAILURES"].split(",")]
    if attempt >= len(plan):
        return
    failing, mode = int(plan[attempt][0]), plan[attempt][1]
    port_file = os.path.join(os.environ["PROBE_DIR"], f"port{attempt}")
    if rank == failing:
        server = socket.create_server(("127.0.0.1", 0))
        _CONNECTIONS.append(server)
        with open(port_file + ".tmp", "w") as f:
            f.write(str(server.getsockname()[1]))
        os.replace(port_file + ".tmp", port_file)
        _CONNECTIONS.extend(server.accept()[0] for _ in range(world - 1))  # every peer is waiting
        fail(mode)
    while not os.path.exists(port_file):
        time.sleep(0.01)
    with open(port_file) as f:
        peer = socket.create_connection(("127.0.0.1", int(f.read())))
    if not peer.recv(1):
        raise ConnectionError(f"rank {rank}: Connection closed by peer")


def fail(mode: str) -> None:
    if mode == "exit7":
        sys.exit(7)
    if mode == "raise":
        raise RuntimeError(f"probe failure on rank {os.environ['RANK']}")
    if mode == "os_exit3":
        os._exit(3)
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise ValueError(f"PROBE_FAILURES: unknown mode {mode!r}")


if __name__ == "__main__":
    run(main)
