"""Simulated hosts: Linux network namespaces on one bridge, each with its own IP and host name.

Every host sees the others by name through /etc/netns/<ns>/hosts, which `ip netns exec` mounts
over /etc/hosts. The machine's own host name resolves as in /etc/hosts, to loopback on many real
machines: exactly what makes gloo advertise 127.0.0.1 unless told an interface. With
`pod_hostnames`, it resolves to each host's own address instead, as a Kubernetes pod's does.
Needs root (CAP_NET_ADMIN) and iproute2. `ip`, `pids`, `kill_all`, `remove_netns` and `alive` are
for other harnesses that make namespaces of their own (tests/cluster/slurm_cluster.py).
"""

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def ip(*args: str) -> str:
    """Runs `ip ARGS`; its stdout, or a RuntimeError with its stderr."""
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
    link: str = ""  # its cable: the veth end on the bridge

    def cut(self, up: bool = False) -> None:
        """Cuts this host off the network (no FIN, no RST: packets are lost), or mends it."""
        ip("link", "set", self.link, "up" if up else "down")

    def signal(self, sig: signal.Signals) -> list[int]:
        """Sends `sig` to every process of this host (SIGSTOP: a frozen host); returns them."""
        found = self.pids()
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return found

    def popen(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[str]:
        """Starts `argv` inside this host, in a session of its own, its output going to `log`."""
        with log.open("w") as out:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def pids(self) -> list[int]:
        """The processes living in this host's network namespace."""
        return pids(self.netns)


def pids(netns: str) -> list[int]:
    """The processes living in the network namespace `netns`."""
    return [int(p) for p in ip("netns", "pids", netns).split()]


def tf_config(hosts: Sequence[Host], index: int, port: int = 29511) -> str:
    """TF_CONFIG of host `index`: the first host is the chief, the others workers."""
    cluster = {
        "chief": [f"{hosts[0].address}:{port}"],
        "worker": [f"{h.address}:{port}" for h in hosts[1:]],
    }
    task = {"type": "chief", "index": 0} if index == 0 else {"type": "worker", "index": index - 1}
    return json.dumps({"cluster": cluster, "task": task})


_clusters = itertools.count()
_NETNS = Path("/etc/netns")
_OURS = re.compile(r"pyd(\d+)c\d+")  # the tag of a cluster: test process id, serial


@contextlib.contextmanager
def hosts(count: int, *, pod_hostnames: bool = False) -> Iterator[list[Host]]:
    """`count` hosts on a fresh bridge and subnet; all torn down afterwards, processes first."""
    _remove_leftovers()
    serial = next(_clusters) % 100
    # Unique per test process and cluster, as names of links outlive their namespace a moment.
    tag = f"pyd{os.getpid() % 100000}c{serial}"  # interface names have at most 15 characters
    subnet = f"10.{100 + os.getpid() % 100}.{serial}"
    bridge = f"{tag}br"
    made: list[Host] = []
    made_netns_dir = not _NETNS.exists()
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("link", "set", bridge, "up")
        for index in range(1, count + 1):
            link = f"{tag}v{index}"
            host = Host(f"{tag}h{index}", f"node{index}.{tag}", f"{subnet}.{index}", link=link)
            made.append(host)
            ip("netns", "add", host.netns)
            ip("link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            ip("link", "set", link, "master", bridge, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.netns, "link", "set", "eth0", "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
        everyone = "".join(f"{h.address} {h.name}\n" for h in made)
        machine = Path("/etc/hosts").read_text()
        for host in made:
            # Listed first, this line's address comes first when the host name is resolved.
            own = f"{host.address} {socket.gethostname()}\n" if pod_hostnames else ""
            (_NETNS / host.netns).mkdir(parents=True, exist_ok=True)
            (_NETNS / host.netns / "hosts").write_text(own + machine + everyone)
        yield made
    finally:
        survivors = [pid for host in made for pid in kill_all(host.netns)]
        for index, host in enumerate(made, 1):
            with contextlib.suppress(RuntimeError):
                ip("link", "del", f"{tag}v{index}")
            remove_netns(host.netns)
        with contextlib.suppress(RuntimeError):
            ip("link", "del", bridge)
        if made_netns_dir:
            with contextlib.suppress(OSError):
                _NETNS.rmdir()
        assert not survivors, f"processes that SIGKILL did not end: {survivors}"


def remove_netns(netns: str) -> None:
    """Deletes the network namespace `netns` and its /etc/netns directory, if they are there."""
    with contextlib.suppress(RuntimeError):
        ip("netns", "del", netns)
    with contextlib.suppress(FileNotFoundError):
        for leftover in (_NETNS / netns).iterdir():
            leftover.unlink()
        (_NETNS / netns).rmdir()


def _remove_leftovers() -> None:
    """Removes the hosts of test processes that died before their teardown ran (a SIGKILL)."""
    for netns in ip("netns", "list").split():
        match = _OURS.match(netns)
        if match and not alive(int(match[1])):
            kill_all(netns)
            remove_netns(netns)
    for link in re.findall(r"^\d+: (pyd\d+c\d+\w+?)[@:]", ip("link", "show"), re.M):
        match = _OURS.match(link)
        if match and not alive(int(match[1])):
            with contextlib.suppress(RuntimeError):
                ip("link", "del", link)


def alive(pid_suffix: int) -> bool:
    """Whether a live process has a pid ending like a tag's (tags keep pid % 100000)."""
    return any(int(p) % 100000 == pid_suffix for p in os.listdir("/proc") if p.isdigit())


def kill_all(netns: str) -> list[int]:
    """SIGKILLs every process in `netns`; returns those still there after 5 s."""
    found: list[int] = []
    for _ in range(50):
        with contextlib.suppress(RuntimeError):
            found = pids(netns)
        if not found:
            return []
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return found
