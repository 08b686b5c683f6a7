"""py_distributed_test under real `bazel test`: every rank in the sandbox, Bazel's test protocol
(per-rank outputs, JUnit, TEST_TMPDIR), a failing rank, Bazel's timeout, repeated runs."""

import uuid
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from harness.bazel import ROOT, bazel, wait_for
from harness.procfs import processes_with_env

from py_distributed.launch import facilities

UNITTEST = "//tests/e2e:ranks_unittest_test"  # 3 ranks, block-network
PYTEST = "//tests/e2e:ranks_pytest_test"  # 2 ranks, block-network


def logs_of(label: str) -> Path:
    package, name = label[2:].split(":")
    return ROOT / "bazel-testlogs" / package / name


def cases(label: str) -> dict[str, str | None]:
    """The JUnit file's testcases: name -> failure message, None for a pass."""
    suite = ET.parse(logs_of(label) / "test.xml").getroot()
    found = {}
    for case in suite.iter("testcase"):
        failure = case.find("failure")
        found[case.get("name", "")] = None if failure is None else failure.get("message")
    return found


def outputs(label: str) -> dict[str, bytes]:
    with zipfile.ZipFile(logs_of(label) / "test.outputs" / "outputs.zip") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_every_rank_passes_with_its_outputs_junit_and_temp_files_in_test_tmpdir(tmp_path):
    host_tmp = tmp_path / "tmp"  # what TMPDIR would be outside the test: nothing may land here
    host_tmp.mkdir()
    done = bazel(
        "test", UNITTEST, PYTEST, "--nocache_test_results", f"--test_env=TMPDIR={host_tmp}"
    )
    assert done.returncode == 0, done.stdout
    assert cases(UNITTEST) == {"rank 0": None, "rank 1": None, "rank 2": None}
    assert cases(PYTEST) == {"rank 0": None, "rank 1": None}
    files = outputs(UNITTEST)
    for rank in range(3):
        assert f"rank {rank} of 3: all_reduce ok" in files[f"rank{rank}.stdout.log"].decode()
        assert "OK" in files[f"rank{rank}.stderr.log"].decode()  # unittest's summary
    assert "1 passed" in outputs(PYTEST)["rank1.stdout.log"].decode()  # pytest's summary
    assert list(host_tmp.iterdir()) == []


def test_a_failing_rank_fails_the_test_with_its_assertion_as_the_root_cause():
    # Rank 2 fails an assertion (tests/harness/probe.py's grammar).
    done = bazel("test", UNITTEST, "--test_env=PROBE_FAILURES=2:assert", "--nocache_test_results")
    assert done.returncode == 3, done.stdout  # Bazel's "tests failed"
    log = (logs_of(UNITTEST) / "test.log").read_text()
    assert "root cause: rank 2 exited with code 1" in log
    assert "[rank2]: AssertionError: probe failure on rank 2" in log
    verdicts = cases(UNITTEST)
    assert verdicts["rank 2"] == "root cause: rank 2 exited with code 1"
    assert all(verdicts[f"rank {r}"] for r in (0, 1)), verdicts  # they fail, after rank 2
    stderr = outputs(UNITTEST)["rank2.stderr.log"].decode()
    assert "AssertionError: probe failure on rank 2" in stderr


def test_bazel_timeout_shows_every_ranks_stack_and_leaves_nothing_running():
    mark = uuid.uuid4().hex
    done = bazel(
        "test",
        UNITTEST,
        "--test_env=PROBE_HANG=1",
        f"--test_env=PROBE_MARK={mark}",
        "--test_timeout=25",
        "--nocache_test_results",
    )
    assert done.returncode == 3, done.stdout
    assert "TIMEOUT" in done.stdout
    log = (logs_of(UNITTEST) / "test.log").read_text()
    if "signals_to_handle" in facilities.launch_config_fields():
        assert "SIGTERM: Python stacks of the 3 running workers" in log
        for rank in range(3):
            block = log.partition(f": rank {rank} (local rank {rank},")[2]
            # Its threads' stacks, up to the next rank's label (the runtime's progress thread too).
            assert "in wait_for_the_timeout" in block.partition("(local rank ")[0], log
    else:  # torch 2.4 takes SIGTERM itself, as the launch said at its start
        assert "no stacks of the ranks on a stop signal" in log, log
    assert wait_for(lambda: not processes_with_env("PROBE_MARK", mark), timeout=10)


def test_four_runs_of_one_target_two_at_a_time_all_pass():
    done = bazel(
        "test", PYTEST, "--runs_per_test=4", "--local_test_jobs=2", "--nocache_test_results"
    )
    assert done.returncode == 0, done.stdout
    assert "Stats over 4 runs" in done.stdout
