"""Signals to the launcher, on real processes: every running rank's stacks when it is told to stop,
and preemption signals (SIGUSR1, SIGUSR2) passed on to the workers, which decide."""

import re
import signal
import time

import pytest
import test_failures
from bazel_harness import BIN, wait_for
from test_failures import finish

run_id = test_failures.run_id  # the fixture: afterwards no process of the run may be left

STUB = BIN / "tests/e2e/signals_probe"
TARGET = "//tests/e2e:signals_probe"
# The launcher's label of one rank's stacks (py_distributed/signals.py).
LABEL = re.compile(rf"^{re.escape(TARGET)}: rank (\d+) \(local rank \d, node rank 0, pid \d+\):$")


def start(probe_dir, rdzv_id, **probe):
    """Starts the probe binary in its own session with PROBE_* settings; returns the Popen once
    both ranks wait, in the functions their stacks must name."""
    proc = test_failures.launch(probe_dir, rdzv_id, STUB, **probe)
    ready = lambda: len(list(probe_dir.glob("rank*.ready"))) == 2  # noqa: E731
    if not wait_for(ready, timeout=60):
        proc.kill()
        pytest.fail(f"the ranks never got ready: {finish(proc)}")
    return proc


def stacks_by_rank(out):
    """Each rank's block of stacks in the job's output: its label, then faulthandler's lines."""
    blocks: dict[int, list[str]] = {}
    current = None
    for line in out.splitlines():
        label = LABEL.match(line)
        if label:
            current = blocks.setdefault(int(label[1]), [])
        elif current is not None and (not line or line.startswith(("  ", "Thread ", "Current "))):
            current.append(line)
        else:
            current = None
    return {rank: "\n".join(lines) for rank, lines in blocks.items()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_shows_each_ranks_stacks_under_its_rank_then_stops(probe_dir, run_id, sig):
    proc = start(probe_dir, run_id)
    sent = time.monotonic()
    proc.send_signal(sig)
    code, out = finish(proc, timeout=60)
    print(f"{sig.name}: stop to exit {time.monotonic() - sent:.2f} s")
    assert code == 128 + sig, out
    blocks = stacks_by_rank(out)
    assert sorted(blocks) == [0, 1], out
    for stacks in blocks.values():  # every thread of the rank, each in its own function
        assert "in wait_for_preemption" in stacks and "in helper_thread_waits" in stacks, out
    assert out.index("Python stacks of the 2 running workers") < out.index(f"stopped by {sig.name}")


def test_sigusr1_reaches_every_rank_whose_handler_checkpoints_and_the_job_succeeds(
    probe_dir, run_id
):
    proc = start(probe_dir, run_id, checkpoint=1)
    proc.send_signal(signal.SIGUSR1)
    code, out = finish(proc, timeout=60)
    assert code == 0, out
    checkpoints = sorted(p.name for p in probe_dir.glob("checkpoint*"))
    assert checkpoints == ["checkpoint0", "checkpoint1"], out
    assert all((probe_dir / name).read_text() == "SIGUSR1" for name in checkpoints)


def test_sigusr2_ends_a_job_whose_ranks_have_no_handler_with_that_signal(probe_dir, run_id):
    proc = start(probe_dir, run_id)
    proc.send_signal(signal.SIGUSR2)
    code, out = finish(proc, timeout=60)
    assert code == 128 + signal.SIGUSR2, out
    # The run_id fixture then checks that no process of the run is left.
