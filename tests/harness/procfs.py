"""What the process table and the socket tables say, read from /proc (Linux)."""

import contextlib
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes started with NAME=VALUE in their environment."""
    wanted = f"{name}={value}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if wanted in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:  # gone meanwhile, or a kernel thread
                continue
    return pids


def listening_addresses(pids: Sequence[int]) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that one of `pids` holds."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                address, port = local.split(":")
                found.append((_address(address), int(port, 16)))
    return found


def _address(hexed: str) -> str:
    """/proc/net/tcp{,6} spell addresses as host-order 32-bit words in hex."""
    raw = b"".join(int(hexed[i : i + 8], 16).to_bytes(4, "little") for i in range(0, len(hexed), 8))
    return str(ipaddress.ip_address(raw))
