"""A real SLURM 22.05 on this machine: munged and slurmctld in the root network namespace, one
slurmd per compute node, each node a network namespace of its own on a bridge.

The facts behind each choice are in shared/research/slurm.md. In short: one munged serves every
node (a unix socket is reachable from any network namespace); each slurmd runs inside
`unshare --uts --mount` (its own host name, and the cluster's hosts file over /etc/hosts, so that
SLURM's node names resolve for torch's c10d) and `nsenter --net`, not `ip netns exec`, which
remounts /sys and hides the cgroup tree that slurmd 22.05 cannot start without. Needs root,
iproute2, and Debian's slurmctld, slurmd, slurm-client and munge (tools/setup.sh).
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import netns

# Distinct from tests/harness/netns.py's names (pyd<pid>c<n>) and subnets (10.100-199.x).
_TAG = "pys"
_OURS = re.compile(rf"{_TAG}(\d+)")
_DIR_PREFIX = "py_distributed-slurm-"
_STOP_SECONDS = 5  # SIGTERM, then SIGKILL: the research note's tear-down bound


@dataclass(frozen=True)
class Node:
    """One compute node: its SLURM name (also its host name), network namespace and address."""

    name: str
    netns: str
    address: str

    def pids(self) -> list[int]:
        """Every process in this node's network namespace: slurmd, and whatever jobs left."""
        return netns.pids(self.netns)


@dataclass(frozen=True)
class Cluster:
    directory: Path  # configuration, state, logs and munge's socket
    conf: Path
    nodes: tuple[Node, ...]
    daemons: dict[str, int]  # name -> pid, for the tear-down and for tests to tell them apart

    def env(self) -> dict[str, str]:
        """What SLURM's clients need to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> str:
        """Runs a SLURM client against this cluster; its stdout."""
        done = subprocess.run(
            argv, env={**os.environ, **self.env()}, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> list[str]:
        """The ids of the jobs slurmctld has queued or running."""
        return self.run("squeue", "--noheader", "--format=%i").split()

    def job_processes(self) -> dict[str, list[str]]:
        """Per node, the processes other than its slurmd, "PID COMMAND LINE" each: what a job
        left running there."""
        daemons = set(self.daemons.values())
        return {n.name: [_described(p) for p in n.pids() if p not in daemons] for n in self.nodes}


@contextlib.contextmanager
def cluster(count: int = 3) -> Iterator[Cluster]:
    """A SLURM cluster of `count` idle nodes in two partitions: `debug`, the default, with no
    limits, and `short` (at most 2 nodes for 5 minutes). Every daemon, process, namespace, link and
    file of it is gone afterwards."""
    _remove_leftovers()
    tag = f"{_TAG}{os.getpid() % 100000}"
    subnet = f"10.99.{os.getpid() % 250}"
    bridge = f"{tag}br"
    directory = Path(tempfile.mkdtemp(prefix=f"{_DIR_PREFIX}{os.getpid()}-"))
    nodes = tuple(Node(f"node{i}", f"{tag}n{i}", f"{subnet}.{i}") for i in range(1, count + 1))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    made: list[Node] = []
    try:
        netns.ip("link", "add", bridge, "type", "bridge")
        netns.ip("addr", "add", f"{subnet}.254/24", "dev", bridge)
        netns.ip("link", "set", bridge, "up")
        for index, node in enumerate(nodes, 1):
            made.append(node)
            netns.ip("netns", "add", node.netns)
            veth = f"{tag}v{index}"
            peer = ("peer", "name", "eth0", "netns", node.netns)
            netns.ip("link", "add", veth, "type", "veth", *peer)
            netns.ip("link", "set", veth, "master", bridge, "up")
            netns.ip("-n", node.netns, "addr", "add", f"{node.address}/24", "dev", "eth0")
            netns.ip("-n", node.netns, "link", "set", "eth0", "up")
            netns.ip("-n", node.netns, "link", "set", "lo", "up")
        controller = socket.gethostname().split(".")[0]
        conf = _write_config(directory, controller, f"{subnet}.254", nodes)
        processes["munged"] = _start_munged(directory)
        processes["slurmctld"] = _start(
            directory, "slurmctld", ["slurmctld", "-D", "-f", str(conf)]
        )
        for node in nodes:
            processes[node.name] = _start_slurmd(directory, conf, node)
        up = Cluster(directory, conf, nodes, {name: p.pid for name, p in processes.items()})
        _wait_until_idle(up, processes)
        yield up
    finally:
        try:
            _stop(processes)
            survivors = [pid for node in made for pid in netns.kill_all(node.netns)]
        finally:
            for index, node in enumerate(made, 1):
                with contextlib.suppress(RuntimeError):
                    netns.ip("link", "del", f"{tag}v{index}")
                netns.remove_netns(node.netns)
            with contextlib.suppress(RuntimeError):
                netns.ip("link", "del", bridge)
            shutil.rmtree(directory, ignore_errors=True)
        assert not survivors, f"processes that SIGKILL did not end: {survivors}"


def _write_config(directory: Path, controller: str, address: str, nodes: tuple[Node, ...]) -> Path:
    for sub in ("state", "spool", "munge"):
        (directory / sub).mkdir()
    # munged: "Socket is inaccessible" unless everyone may traverse to its socket.
    for path in (directory, directory / "munge"):
        path.chmod(0o755)
    hosts = "127.0.0.1 localhost\n" + "".join(f"{n.address} {n.name}\n" for n in nodes)
    (directory / "hosts").write_text(hosts + f"{address} {controller}\n")
    with socket.socket() as probe:  # a free port: another slurmctld may hold SLURM's default
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    lines = [
        "ClusterName=pyd",
        f"SlurmctldHost={controller}({address})",
        f"SlurmctldPort={port}",
        "SlurmUser=root",
        f"AuthInfo=socket={directory}/munge/munged.socket",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SlurmdParameters=config_overrides",  # every node advertises this machine's 2 CPUs
        "ReturnToService=2",
        "MailProg=/bin/true",
        "MinJobAge=300",  # finished jobs stay visible to `scontrol show job`
        "KillWait=5",
        f"StateSaveLocation={directory}/state",
        f"SlurmdSpoolDir={directory}/spool/%n",
        f"SlurmctldPidFile={directory}/slurmctld.pid",
        f"SlurmdPidFile={directory}/slurmd-%n.pid",
        f"SlurmctldLogFile={directory}/slurmctld.log",
        f"SlurmdLogFile={directory}/slurmd-%n.log",
        *(f"NodeName={n.name} NodeAddr={n.address} CPUs=2 State=UNKNOWN" for n in nodes),
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "PartitionName=short Nodes=ALL MaxNodes=2 MaxTime=5 State=UP",  # limits to check against
    ]
    conf = directory / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def _start(directory: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with (directory / f"{name}.out").open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _start_munged(directory: Path) -> subprocess.Popen[bytes]:
    key = directory / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    munge = directory / "munge"
    argv = [
        "munged",
        "--foreground",
        f"--key-file={key}",
        f"--socket={munge}/munged.socket",
        f"--pid-file={munge}/munged.pid",
        f"--log-file={munge}/munged.log",
        f"--seed-file={munge}/munged.seed",
    ]
    return _start(directory, "munged", argv)


def _start_slurmd(directory: Path, conf: Path, node: Node) -> subprocess.Popen[bytes]:
    # unshare and nsenter exec what they run, so the pid is slurmd's own.
    script = (
        'hostname "$1" && mount --bind "$2" /etc/hosts'
        ' && exec nsenter --net=/run/netns/"$3" slurmd -D -f "$4" -N "$1"'
    )
    unshare = ["unshare", "--uts", "--mount", "--propagation", "slave", "sh", "-c", script, "sh"]
    argv = [*unshare, node.name, str(directory / "hosts"), node.netns, str(conf)]
    return _start(directory, f"slurmd-{node.name}", argv)


def _wait_until_idle(up: Cluster, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    states: list[str] = []
    while time.monotonic() < deadline:
        dead = [name for name, p in processes.items() if p.poll() is not None]
        if dead:
            logs = "".join(
                (up.directory / f"{name}.out").read_text(errors="replace") for name in dead
            )
            raise RuntimeError(f"{', '.join(dead)} ended at start: {logs}")
        with contextlib.suppress(RuntimeError):  # slurmctld not answering yet
            # One line per node and partition.
            states = sorted(set(up.run("sinfo", "-h", "--Node", "--format=%N %t").splitlines()))
            if len(states) == len(up.nodes) and all(s.endswith(" idle") for s in states):
                return
        time.sleep(0.1)
    raise RuntimeError(f"nodes not idle after 30 s: {states}")


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every daemon at once, SIGKILL to what is left after _STOP_SECONDS."""
    for process in processes.values():
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _STOP_SECONDS
    for process in processes.values():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _remove_leftovers() -> None:
    """Removes what a test process that died before its tear-down (a SIGKILL) left: its nodes'
    namespaces and processes, its links, its daemons in the root namespace and its directory."""

    def dead(name: str) -> bool:
        match = _OURS.match(name)
        return bool(match) and not netns.alive(int(match[1]))

    for namespace in netns.ip("netns", "list").split():
        if dead(namespace):
            netns.kill_all(namespace)
            netns.remove_netns(namespace)
    for link in re.findall(rf"^\d+: ({_TAG}\d+\w+?)[@:]", netns.ip("link", "show"), re.M):
        if dead(link):
            with contextlib.suppress(RuntimeError):
                netns.ip("link", "del", link)
    for directory in Path(tempfile.gettempdir()).glob(f"{_DIR_PREFIX}*"):
        owner = directory.name.removeprefix(_DIR_PREFIX).partition("-")[0]
        if owner.isdecimal() and not Path(f"/proc/{owner}").exists():
            _kill_processes_naming(str(directory))
            shutil.rmtree(directory, ignore_errors=True)


def _described(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"{pid} (ended)"
    return f"{pid} {b' '.join(argv).decode(errors='replace').strip()}"


def _kill_processes_naming(text: str) -> None:
    """SIGKILLs the processes whose command line names `text` (a dead run's daemons)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdecimal() and text.encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
