"""Simulated hosts: Linux network namespaces on one bridge, each with its own IP and host name.

Every host sees the others by name through /etc/netns/<ns>/hosts, which `ip netns exec` mounts
over /etc/hosts. The machine's own host name still resolves to loopback in every namespace, as on
many real machines: exactly what makes gloo advertise 127.0.0.1 unless told an interface.
Needs root (CAP_NET_ADMIN) and iproute2.
"""

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Host:
    """One simulated host."""

    netns: str
    name: str  # its host name, known to every host
    address: str
    interface: str = "eth0"

    def popen(self, argv: Sequence[str], env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
        """Starts `argv` inside this host, in a session of its own."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.netns, *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            **kwargs,
        )

    def pids(self) -> list[int]:
        """The processes living in this host's network namespace."""
        return [int(p) for p in _ip("netns", "pids", self.netns).split()]


_clusters = itertools.count()


@contextlib.contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """`count` hosts on a fresh bridge and subnet; all torn down afterwards, processes first."""
    serial = next(_clusters) % 100
    # Unique per test process and cluster, as names of links outlive their namespace a moment.
    tag = f"pyd{os.getpid() % 100000}c{serial}"  # interface names have at most 15 characters
    subnet = f"10.{100 + os.getpid() % 100}.{serial}"
    bridge = f"{tag}br"
    made: list[Host] = []
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        for index in range(1, count + 1):
            host = Host(f"{tag}h{index}", f"node{index}.{tag}", f"{subnet}.{index}")
            made.append(host)
            _ip("netns", "add", host.netns)
            _ip("link", "add", f"{tag}v{index}", "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)  # fmt: skip
            _ip("link", "set", f"{tag}v{index}", "master", bridge, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        hosts_file = "".join(f"{h.address} {h.name}\n" for h in made)
        for host in made:
            etc = Path("/etc/netns") / host.netns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(Path("/etc/hosts").read_text() + hosts_file)
        yield made
    finally:
        for index, host in enumerate(made, 1):
            _kill_all(host)
            with contextlib.suppress(RuntimeError):
                _ip("link", "del", f"{tag}v{index}")
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", host.netns)
            with contextlib.suppress(FileNotFoundError):
                for leftover in (Path("/etc/netns") / host.netns).iterdir():
                    leftover.unlink()
                (Path("/etc/netns") / host.netns).rmdir()
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", bridge)


def _kill_all(host: Host) -> None:
    with contextlib.suppress(RuntimeError):
        for _ in range(50):
            pids = host.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
