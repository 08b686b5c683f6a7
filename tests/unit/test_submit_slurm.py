"""The SLURM submitter's pure decisions: which files the nodes see, sbatch's time grammar, which
partition admits a job, and what the follower does with scontrol's answers (a fake client, a fake
clock). tests/cluster runs the submitter itself against a real SLURM."""

import itertools
import signal

import pytest

from py_distributed.errors import UsageError
from py_distributed.submit.slurm import shared_fs
from py_distributed.submit.slurm.checks import check_partition
from py_distributed.submit.slurm.follower import Stop, exit_status, follow
from py_distributed.submit.slurm.request import Job, parse, time_seconds

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


PARTITIONS = {
    "debug": {"PartitionName": "debug", "TotalNodes": "3", "Default": "YES"},
    "short": {"PartitionName": "short", "TotalNodes": "3", "MaxNodes": "2", "MaxTime": "5:00"},
}


def test_of_several_partitions_one_that_admits_the_job_is_enough():
    check_partition(parse(["--partition=short,debug"], "//t"), 3, PARTITIONS, {})
    with pytest.raises(UsageError, match=r"^--nodes=3: partition short allows at most 2 nodes"):
        check_partition(parse(["--partition=short"], "//t"), 3, PARTITIONS, {})


def test_a_partition_from_the_environment_is_named_as_its_source():
    with pytest.raises(UsageError, match=r"^SBATCH_PARTITION='gpu': no partition gpu; use one of"):
        check_partition(parse([], "//t"), 1, PARTITIONS, {"SBATCH_PARTITION": "gpu"})


class FakeSlurm:
    """scontrol's answers about one job, one per question, on a clock that only sleeping moves;
    `on_ask` runs before each answer (a stop signal arriving)."""

    def __init__(self, answers, on_ask=lambda asked: None):
        self.answers, self.on_ask = iter(answers), on_ask
        self.asked, self.now, self.cancelled = 0, 0.0, []

    def job(self, job_id):
        self.asked += 1
        self.on_ask(self.asked)
        return next(self.answers)

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def sleep(self, seconds):
        self.now += seconds


def follow_job(slurm, tmp_path, stop=None):
    job = Job("//t:probe", "/stub", (), 2, "", "", str(tmp_path), str(tmp_path))
    return follow(
        "//t:probe.slurm",
        job,
        "7",
        slurm,
        stop or Stop(),
        clock=lambda: slurm.now,
        sleep=slurm.sleep,
    )


def pending(reason):
    return {"JobState": "PENDING", "Reason": reason}


RUNNING = {"JobState": "RUNNING", "NodeList": "node[1-2]"}


def test_the_queue_is_a_line_per_change_then_the_nodes_output_then_the_exit_status(
    tmp_path, capsys
):
    (tmp_path / "7.node1.out").write_text("[n2 rank3]: step 1\n[n2 rank3]: no newline yet")
    answers = [pending("Priority")] * 3 + [pending("Resources"), RUNNING]
    code = follow_job(FakeSlurm([*answers, {"JobState": "COMPLETED"}]), tmp_path)
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "[n2 rank3]: step 1\n[n2 rank3]: no newline yet"
    assert err.splitlines() == [
        "//t:probe.slurm: job 7 PENDING (Priority), 0:00 in the queue",
        "//t:probe.slurm: job 7 PENDING (Resources), 0:03 in the queue",
        "//t:probe.slurm: job 7 RUNNING on node[1-2], 0:04 after submission",
        "//t:probe.slurm: job 7 COMPLETED after 0:04: exit status 0",
    ]


def test_a_stop_signal_cancels_the_job_once_and_waits_until_it_ended(tmp_path, capsys):
    stop = Stop()

    def signal_at_second_question(asked):
        if asked == 2:
            stop.signum = signal.SIGINT

    answers = [RUNNING, RUNNING, {"JobState": "COMPLETING"}, {"JobState": "CANCELLED"}]
    slurm = FakeSlurm(answers, signal_at_second_question)
    assert follow_job(slurm, tmp_path, stop) == 128 + signal.SIGINT
    assert slurm.cancelled == ["7"] and slurm.asked == 4
    assert "//t:probe.slurm: cancelling job 7 (scancel)\n" in capsys.readouterr().err


def test_a_silent_slurmctld_is_asked_again_for_a_minute_then_given_up(tmp_path, capsys):
    ended = {"JobState": "FAILED", "ExitCode": "3:0"}
    assert follow_job(FakeSlurm([RUNNING, *[None] * 60, ended]), tmp_path) == 3
    slurm = FakeSlurm(itertools.chain([RUNNING], itertools.repeat(None)))
    assert follow_job(slurm, tmp_path) == 1
    assert 60 < slurm.now <= 62
    assert "error: slurmctld knows no job 7 any more" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("state", "exit_code", "cancelled_by", "status"),
    [
        ("COMPLETED", "0:0", None, 0),
        ("FAILED", "7:0", None, 7),  # the first failing node's code (the batch script's)
        ("TIMEOUT", "0:15", None, 128 + 15),
        ("NODE_FAIL", "0:0", None, 1),
        ("CANCELLED", "0:15", signal.SIGTERM, 128 + signal.SIGTERM),
    ],
)
def test_the_ended_jobs_exit_status(state, exit_code, cancelled_by, status):
    assert exit_status({"JobState": state, "ExitCode": exit_code}, cancelled_by) == status
