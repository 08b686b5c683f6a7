"""Bazel's test protocol from torch elastic's log directory: per-rank files, JUnit verdicts."""

import xml.etree.ElementTree as ET

from py_distributed import bazel_test
from py_distributed.launch.root_cause import Failure, Outcome


def torch_logs(root, attempts=1, ranks=2):
    """A log directory as torch elastic lays it out: <run id>_*/attempt_<n>/<local rank>/*.log."""
    for attempt in range(attempts):
        for rank in range(ranks):
            rank_dir = root / "run_x7" / f"attempt_{attempt}" / str(rank)
            rank_dir.mkdir(parents=True)
            (rank_dir / "stdout.log").write_text(f"out {attempt}.{rank}\n")
            (rank_dir / "stderr.log").write_text(f"err {attempt}.{rank}\n")
            (rank_dir / "error.json").write_text("{}")
    return root


def failure(rank, exitcode, traceback="", summary=""):
    return Failure(rank, rank, 100 + rank, exitcode, traceback, summary, 0, None)


def test_logs_are_found_by_attempt_and_rank(tmp_path):
    logs = bazel_test.rank_logs(str(torch_logs(tmp_path, attempts=2)))
    assert sorted(logs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert logs[(1, 0)]["stdout"].read_text() == "out 1.0\n"
    assert set(logs[(0, 1)]) == {"stdout", "stderr"}  # error.json is not output


def test_no_log_directory_means_no_logs():
    assert bazel_test.rank_logs("") == {}


def test_the_last_attempt_is_named_by_rank_and_earlier_ones_by_attempt_too(tmp_path):
    outputs = tmp_path / "outputs"
    bazel_test.copy_logs(bazel_test.rank_logs(str(torch_logs(tmp_path / "logs", 2))), outputs)
    assert sorted(p.name for p in outputs.iterdir()) == [
        "attempt0.rank0.stderr.log",
        "attempt0.rank0.stdout.log",
        "attempt0.rank1.stderr.log",
        "attempt0.rank1.stdout.log",
        "rank0.stderr.log",
        "rank0.stdout.log",
        "rank1.stderr.log",
        "rank1.stdout.log",
    ]
    assert (outputs / "rank1.stdout.log").read_text() == "out 1.1\n"


def verdicts(suite: ET.Element) -> dict[str, str | None]:
    return {
        case.get("name", ""): (None if (f := case.find("failure")) is None else f.get("message"))
        for case in suite.iter("testcase")
    }


def test_every_rank_passes_with_its_own_output(tmp_path):
    logs = {r: files for (_, r), files in bazel_test.rank_logs(str(torch_logs(tmp_path))).items()}
    suite = bazel_test.junit("//t:t", Outcome(0, 2), logs, 1.5)
    assert verdicts(suite) == {"rank 0": None, "rank 1": None}
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    rank1 = suite.findall("testcase")[1]
    assert rank1.findtext("system-out") == "out 0.1\n"
    assert rank1.findtext("system-err") == "err 0.1\n"


def test_each_failed_rank_carries_its_error_and_the_root_cause_is_marked():
    failed = [
        failure(2, 1, "Traceback ...\nAssertionError: 2 != -1", "AssertionError: 2 != -1"),
        failure(0, -15),
    ]
    suite = bazel_test.junit("//t:t", Outcome(1, 3, failed), {}, 1.0)
    assert verdicts(suite) == {
        "rank 0": "rank 0 was killed by SIGTERM",
        "rank 1": "stopped with the job (exit 1); see the test log",
        "rank 2": "root cause: rank 2 exited with code 1: AssertionError: 2 != -1",
    }
    assert suite.get("failures") == "3"
    rank2 = suite.findall("testcase")[2].find("failure")
    assert rank2 is not None and rank2.text == "Traceback ...\nAssertionError: 2 != -1"


def test_a_bad_input_is_one_failed_testcase():
    suite = bazel_test.junit("//t:t", Outcome(2), {}, 0.1)
    assert verdicts(suite) == {"launch": "no rank started (exit 2)"}
