"""The hang timeout (launch/hangs.py) on real gloo jobs through the built binary
(tests/e2e/hang.py, 3 ranks): a rank asleep outside any collective, a rank in another collective
than its peers, a slow rank that keeps going; with spawn and fork."""

import time

import pytest
from harness.bazel import BIN, ROOT, bazel
from harness.launch import finish, launch

HANG = BIN / "tests/e2e/hang"
TIMEOUT = 3  # PY_DISTRIBUTED_HANG_TIMEOUT
NAME = "//tests/e2e:hang"
# The line of hang.py where the hung rank sleeps.
SLEEP_LINE = next(
    number
    for number, line in enumerate((ROOT / "tests/e2e/hang.py").read_text().splitlines(), 1)
    if "time.sleep(3600)" in line
)


def hang(probe_dir, run_ids, method, **probe):
    env = {"PY_DISTRIBUTED_HANG_TIMEOUT": str(TIMEOUT), "PET_START_METHOD": method}
    started = time.monotonic()
    code, out = finish(launch(HANG, probe_dir, run_ids(), env=env, **probe), timeout=120)
    return code, out, time.monotonic() - started


def report_of(out):
    return [line[len(NAME) + 2 :] for line in out.splitlines() if line.startswith(f"{NAME}:   ")]


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_rank_asleep_outside_any_collective_is_named_with_its_stack(
    built, probe_dir, run_ids, method
):
    code, out, took = hang(probe_dir, run_ids, method, hang="sleep")
    assert code == 124, out
    assert f"hang: no collective completed on any rank for {TIMEOUT}" in out, out
    assert report_of(out) == [
        "  rank 0: in all_reduce #6 of group 0 (default_pg, ranks 0-2)",
        "  rank 1: not in a collective",
        "  rank 2: in all_reduce #6 of group 0 (default_pg, ranks 0-2)",
        "  waiting for rank 1: ranks 0, 2 wait in #6 of group 0 (default_pg, ranks 0-2)",
    ], out
    # Its stack shows the line it sleeps on.
    rank1 = out.split(f"{NAME}: rank 1 (local rank 1,")[1].split(f"{NAME}: rank 2 (")[0]
    assert f'hang.py", line {SLEEP_LINE} in main' in rank1, rank1
    # Start-up, the timeout, then the report and the stop on a loaded 2-core machine.
    assert took < 30 + TIMEOUT + 15, took


def test_a_rank_in_another_collective_is_named_as_a_mismatch(built, probe_dir, run_ids):
    code, out, _ = hang(probe_dir, run_ids, "spawn", hang="mismatch")
    assert code == 124, out
    assert (
        "  mismatched collectives in group 0 (default_pg, ranks 0-2): rank 0 in all_reduce #6,"
        " rank 1 in broadcast #6, rank 2 in all_reduce #6"
    ) in report_of(out), out


def test_a_rank_waiting_in_a_subgroups_collective_names_whom_it_waits_for(
    built, probe_dir, run_ids
):
    code, out, _ = hang(probe_dir, run_ids, "spawn", hang="subgroup")
    assert code == 124, out
    found = report_of(out)
    assert "  rank 2: in all_reduce #1 of group 1 (ranks 1-2)" in found, out
    assert "  waiting for ranks 1, 2: rank 0 waits in #6 of group 0 (default_pg, ranks 0-2)" in (
        found
    ), out
    assert "  waiting for rank 1: rank 2 waits in #1 of group 1 (ranks 1-2)" in found, out


def test_a_slow_rank_that_keeps_going_is_never_stopped(built, probe_dir, run_ids):
    # 2 s a step against the 3 s timeout: its peers wait, but a collective completes every 2 s.
    env = {"PY_DISTRIBUTED_HANG_TIMEOUT": str(TIMEOUT)}
    proc = launch(HANG, probe_dir, run_ids(), env=env, hang="slow", hang_step=1, steps=5)
    code, out = finish(proc, timeout=120)
    assert code == 0 and "hang: no collective" not in out, out


def test_a_hung_bazel_test_is_reported_before_bazel_stops_it(built):
    # The test's hang timeout is a third of its own: 12 s of 36.
    done = bazel(
        "test",
        "//tests/e2e:hang_test",
        "--test_env=PROBE_HANG=sleep",
        "--test_timeout=36",
        "--nocache_test_results",
    )
    log = (ROOT / "bazel-testlogs/tests/e2e/hang_test/test.log").read_text()
    assert done.returncode == 3 and "TIMEOUT" not in done.stdout, done.stdout
    assert "hang: no collective completed on any rank for 12 s" in log, log
    assert "  waiting for rank 1: ranks 0, 2 wait in #6" in log, log
