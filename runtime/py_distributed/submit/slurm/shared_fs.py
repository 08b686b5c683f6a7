"""Whether files are where every node of a cluster finds them: on a file system they all mount.

A batch job runs the binary from its runfiles tree, at the path it has on the submitting host, so
that tree, every file its links point to and the job's working directory must be on file systems
the nodes mount at the same paths. The mount table says which file system holds a path and its
type: a network or cluster file system (NFS, Lustre, GPFS, ...) is taken as shared; any other one
only where the user declares it shared (the host that exports a file system sees it as local, and
a test cluster may share one machine's disk).
"""

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Types of the file systems that other machines mount: /proc/self/mountinfo's names.
NETWORK_TYPES = frozenset(
    {
        "afs",
        "beegfs",
        "ceph",
        "cifs",
        "fuse.ceph-fuse",
        "fuse.glusterfs",
        "fuse.juicefs",
        "fuse.sshfs",
        "gfs2",
        "glusterfs",
        "gpfs",
        "lustre",
        "nfs",
        "nfs4",
        "ocfs2",
        "orangefs",
        "panfs",
        "pvfs2",
        "smb3",
        "wekafs",
    }
)
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    """This process's mounts, in the kernel's order (a later mount over the same point wins)."""
    found = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as table:
        for line in table:
            fields, _, tail = line.partition(" - ")
            point = _ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields.split()[4])
            found.append(Mount(point, tail.split()[0]))
    return found


def mount_of(path: str, table: Sequence[Mount]) -> Mount:
    """The mount that holds `path` (an absolute path with no links left in it)."""
    holding = [m for m in table if path == m.point or path.startswith(m.point.rstrip("/") + "/")]
    return max(reversed(holding), key=lambda m: len(m.point))


def unshared(
    paths: Iterable[str], declared: Sequence[str], table: Sequence[Mount]
) -> tuple[str, Mount] | None:
    """The first of `paths` (resolved) that is neither on a network file system nor under one of
    the `declared` shared directories, with its mount; None if every one is shared."""
    shared = [os.path.realpath(d) for d in declared]
    for path in paths:
        real = os.path.realpath(path)
        if any(real == d or real.startswith(d.rstrip("/") + "/") for d in shared):
            continue
        mount = mount_of(real, table)
        if mount.fstype not in NETWORK_TYPES:
            return path, mount
    return None


def runfiles_paths(tree: str) -> list[str]:
    """The tree itself and every file its MANIFEST maps a runfile to (the links' targets)."""
    paths = [tree]
    manifest = os.path.join(tree, "MANIFEST")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8", errors="surrogateescape") as lines:
            for line in lines:
                _, _, target = line.rstrip("\n").partition(" ")
                if target:
                    paths.append(target)
    return paths
