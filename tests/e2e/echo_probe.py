"""A worker that fails, or waits for the one that fails and then dies of its echo, without torch.

Started by torch elastic as `python -u echo_probe.py`, with runtime/ and tests/ on PYTHONPATH, it
reads RANK, WORLD_SIZE and TORCHELASTIC_RESTART_COUNT. PROBE_FAILURES (tests/harness/probe.py's
grammar): on attempt N the Nth entry's rank fails by its mode; attempts past the list succeed. That
rank listens on loopback and writes its port to $PROBE_DIR/port<N>; the others connect and block in
a read, as gloo's peers block in a collective: when it dies, the kernel closes their connections
and they fail a moment later with "Connection closed by peer", the echo that torch elastic's
whole-second order mistakes for a cause. As gloo's, the connections live until the process ends,
and the worker ends as every py_distributed worker does (`py_distributed.worker.run.run`).
"""

import os
import socket
import time

from harness import probe

from py_distributed.worker.run import run

ECHO_SECONDS = 0.05
# Open until the process ends, as a process group's sockets are.
_CONNECTIONS: list[socket.socket] = []


def main() -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    failure = probe.this_attempts_failure()
    if failure is None:
        return
    port_name = f"port{probe.attempt()}"
    if rank == failure.rank:
        server = socket.create_server(("127.0.0.1", 0))
        _CONNECTIONS.append(server)
        probe.write_text(port_name, str(server.getsockname()[1]))
        _CONNECTIONS.extend(server.accept()[0] for _ in range(world - 1))  # every peer is waiting
        probe.fail(failure.mode)
    port_file = os.path.join(os.environ["PROBE_DIR"], port_name)
    while not os.path.exists(port_file):
        time.sleep(0.01)
    with open(port_file) as f:
        peer = socket.create_connection(("127.0.0.1", int(f.read())))
    if not peer.recv(1):
        # A gloo peer raises about 40 to 100 ms after the connection closed (the gloo runs of
        # test_root_cause.py). As SystemExit, not an exception, whose traceback the runtime would
        # record through torch's error handler: importing torch for it takes longer than torch
        # elastic's look at its workers (PET_MONITOR_INTERVAL) on a CUDA build, which would stop
        # the echo first.
        time.sleep(ECHO_SECONDS)
        raise SystemExit(f"rank {rank}: Connection closed by peer")


if __name__ == "__main__":
    run(main)
