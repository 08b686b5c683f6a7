"""The SLURM submitter's pure decisions: which files the nodes see, and sbatch's time grammar.
tests/cluster runs the submitter itself against a real SLURM."""

import pytest

from py_distributed.errors import UsageError
from py_distributed.submit import shared_fs
from py_distributed.submit.slurm import time_seconds

# A login node: local root and scratch, home over NFS, a Lustre mount inside home, a path with a
# space (mountinfo writes it \040).
MOUNTINFO = """\
22 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:40 / /home rw,relatime - nfs4 fs:/home rw,vers=4.2
31 30 0:41 / /home/me/lustre rw - lustre 10.0.0.1@tcp:/fs rw
32 22 254:1 / /scratch rw - xfs /dev/vdb rw
33 22 0:42 / /mnt/my\\040share rw - cifs //server/share rw
"""


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return shared_fs.mounts(str(path))


def test_mountinfo_is_read_with_its_escapes(table):
    assert [(m.point, m.fstype) for m in table] == [
        ("/", "ext4"),
        ("/home", "nfs4"),
        ("/home/me/lustre", "lustre"),
        ("/scratch", "xfs"),
        ("/mnt/my share", "cifs"),
    ]


@pytest.mark.parametrize(
    ("path", "point"),
    [
        ("/home/me/x", "/home"),
        ("/home/me/lustre/y", "/home/me/lustre"),
        ("/homework/z", "/"),  # a prefix of the name is not a parent directory
        ("/scratch", "/scratch"),
    ],
)
def test_a_path_is_on_its_deepest_mount(table, path, point):
    assert shared_fs.mount_of(path, table).point == point


def test_network_file_systems_are_shared_and_local_ones_only_where_declared(table):
    assert (
        shared_fs.unshared(["/home/me/a", "/home/me/lustre/b", "/mnt/my share/c"], [], table)
        is None
    )
    path, mount = shared_fs.unshared(["/home/me/a", "/scratch/me/out"], [], table)
    assert (path, mount.point, mount.fstype) == ("/scratch/me/out", "/scratch", "xfs")
    assert shared_fs.unshared(["/home/me/a", "/scratch/me/out"], ["/scratch"], table) is None
    assert shared_fs.unshared(["/scratchy/out"], ["/scratch"], table)[1].point == "/"


def test_a_runfiles_tree_needs_the_targets_of_its_links(tmp_path):
    tree = tmp_path / "model.slurm.runfiles"
    tree.mkdir()
    (tree / "MANIFEST").write_text("ws/train/model /out/bin/train/model\nws/__init__.py \n")
    assert shared_fs.runfiles_paths(str(tree)) == [str(tree), "/out/bin/train/model"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90 * 60),  # MINUTES
        ("5:30", 5 * 60 + 30),  # MINUTES:SECONDS
        ("1:02:03", 3723),  # HOURS:MINUTES:SECONDS
        ("2-12", (2 * 24 + 12) * 3600),  # DAYS-HOURS
        ("2-12:30", (2 * 24 + 12) * 3600 + 30 * 60),  # DAYS-HOURS:MINUTES
        ("1-00:00:05", 86405),  # DAYS-HOURS:MINUTES:SECONDS, scontrol's MaxTime
        ("UNLIMITED", None),
        ("infinite", None),
        ("0", None),  # sbatch: no limit
    ],
)
def test_time_limits_read_as_sbatch_reads_them(text, seconds):
    assert time_seconds(text, "--time") == seconds


@pytest.mark.parametrize("text", ["soon", "1:2:3:4", "-5", "1-", "1.5", ""])
def test_a_bad_time_limit_names_sbatchs_forms(text):
    with pytest.raises(UsageError, match=rf"^--time={text!r}: use MINUTES, MINUTES:SECONDS"):
        time_seconds(text, "--time")
