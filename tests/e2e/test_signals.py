"""Signals to the launcher, on real processes: every running rank's stacks when it is told to stop,
and preemption signals (SIGUSR1, SIGUSR2) passed on to the workers, which decide."""

import signal
import time

import pytest
from harness.launch import assert_stacks_on_stop, finish, start_signals_probe


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_shows_each_ranks_stacks_under_its_rank_then_stops(probe_dir, run_id, sig):
    proc = start_signals_probe(probe_dir, run_id)
    sent = time.monotonic()
    proc.send_signal(sig)
    code, out = finish(proc, timeout=60)
    print(f"{sig.name}: stop to exit {time.monotonic() - sent:.2f} s")
    assert code == 128 + sig, out
    assert_stacks_on_stop(out, sig)


def test_sigusr1_reaches_every_rank_whose_handler_checkpoints_and_the_job_succeeds(
    probe_dir, run_id
):
    proc = start_signals_probe(probe_dir, run_id, checkpoint=1)
    proc.send_signal(signal.SIGUSR1)
    code, out = finish(proc, timeout=60)
    assert code == 0, out
    checkpoints = sorted(p.name for p in probe_dir.glob("checkpoint*"))
    assert checkpoints == ["checkpoint0", "checkpoint1"], out
    assert all((probe_dir / name).read_text() == "SIGUSR1" for name in checkpoints)


def test_sigusr2_ends_a_job_whose_ranks_have_no_handler_with_that_signal(probe_dir, run_id):
    proc = start_signals_probe(probe_dir, run_id)
    proc.send_signal(signal.SIGUSR2)
    code, out = finish(proc, timeout=60)
    assert code == 128 + signal.SIGUSR2, out
    # The run_id fixture then checks that no process of the run is left.
