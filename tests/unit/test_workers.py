"""The one worker finder (launch.workers) and the shutdown bound (launch.shutdown), on real child
processes started as torch elastic starts them: Popen from the thread that entered the block."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import py_distributed
from py_distributed.launch import shutdown
from py_distributed.launch.workers import Workers
from py_distributed.protocol import WORKERS_DIR_ENV, record_file

RUNTIME = os.path.dirname(os.path.dirname(py_distributed.__file__))

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds: Linux only")


@pytest.fixture
def start():
    """Starts a worker of `workers` running `code`; kills what is left of them after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def worker(workers: Workers, code: str, rank: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, WORKERS_DIR_ENV: workers.directory, "RANK": str(rank)}
        env["PYTHONPATH"] = RUNTIME
        env.update({"LOCAL_RANK": str(rank), "GROUP_RANK": "0"})
        started.append(subprocess.Popen([sys.executable, "-c", code], env=env))
        return started[-1]

    yield worker
    for process in started:
        process.kill()
        process.wait()


def when_told(path, work: str) -> str:
    """A worker's code that waits for the file `path`, then runs `work` as every py_distributed
    worker runs its main."""
    return (
        "import os, time\nfrom py_distributed.worker.run import run\ndef main():\n"
        f"    while not os.path.exists({str(path)!r}):\n        time.sleep(0.005)\n"
        f"    {work}\nrun(main)"
    )


def ended_unreaped(process: subprocess.Popen[bytes]) -> None:
    """Waits for `process` to end, leaving it for the finder (and torch) to reap."""
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)


class Stall:
    """Holds the finder's thread, as a loaded machine does: `hold` ends a worker of its own, whose
    end a listener blocks on until `release`."""

    def __init__(self, workers: Workers, start, tmp_path) -> None:
        self._workers, self._go_file = workers, tmp_path / "stall"
        self._holder = start(workers, when_told(self._go_file, "pass"), rank=9)
        self._held, self._go = threading.Event(), threading.Event()
        workers.on_end(lambda pid, *_: self._block() if pid == self._holder.pid else None)

    def hold(self, workers: int) -> None:
        """Holds the finder once it watches `workers` workers, its own included."""
        assert wait_until(lambda: len(self._workers.watched()) == workers)
        self._go_file.touch()
        assert self._held.wait(timeout=10)

    def _block(self) -> None:
        self._held.set()
        self._go.wait(timeout=30)

    def release(self) -> None:
        self._go.set()


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_the_finder_lists_this_launchs_workers_and_times_each_end(start):
    before = subprocess.Popen(["sleep", "30"])  # the program's own child: not a worker
    try:
        with Workers() as workers:
            sleeper = start(workers, "import time; time.sleep(30)", rank=1)
            failing = start(workers, "import time, os; time.sleep(0.3); os._exit(3)", rank=0)
            assert wait_until(lambda: len(workers.running()) == 2)
            assert [w.rank for w in workers.running()] == ["0", "1"]
            assert workers.running()[1].label() == (
                f"rank 1 (local rank 1, node rank 0, pid {sleeper.pid})"
            )
            assert wait_until(lambda: workers.ended_ns(failing.pid) is not None)
            assert workers.status(failing.pid) == 3
            assert [w.pid for w in workers.running()] == [sleeper.pid]
            assert workers.kill({sleeper.pid, before.pid}) == {sleeper.pid}  # ours only
            assert sleeper.wait(timeout=10) == -signal.SIGKILL
            failing.wait(timeout=10)
        assert not os.path.exists(workers.directory)
    finally:
        before.kill()
        before.wait()


def test_the_survivors_of_a_failure_are_killed_after_the_shutdown_timeout(start, capfd):
    with Workers() as workers, shutdown.bounded(workers, 0.5, name="//t:t"):
        # Deaf to SIGTERM, as a rank stuck in C++ is: only the bound ends it.
        deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        stuck = start(workers, deaf, rank=1)
        assert wait_until(lambda: stuck.pid in workers.watched())
        failed_at = time.monotonic()
        # Not reaped here until the bound has run: its status is the finder's to read, as torch
        # elastic leaves it (a child reaped first tells nothing, and starts no bound).
        failing = start(workers, "import os; os._exit(7)", rank=0)
        assert stuck.wait(timeout=10) == -signal.SIGKILL
        assert failing.wait(timeout=10) == 7
        assert 0.4 < time.monotonic() - failed_at < 5
    assert (
        f"worker pid {stuck.pid} still running 0.5 s after a worker failed"
        in capfd.readouterr().err
    )


def test_a_success_bounds_nobody(start):
    with Workers() as workers, shutdown.bounded(workers, 0.2, name="//t:t"):
        slow = start(workers, "import time; time.sleep(1)", rank=1)
        assert wait_until(lambda: slow.pid in workers.watched())
        done = start(workers, "pass", rank=0)
        assert slow.wait(timeout=10) == 0
        assert done.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("work", "code"),
    [("raise SystemExit(7)", 7), ("os._exit(7)", 7)],
    ids=["through-the-runtime", "without-a-word"],
)
def test_ends_the_finder_saw_in_one_look_keep_their_order(start, tmp_path, work, code):
    # The finder is held while rank 2 fails and, 0.2 s later, rank 0 fails of its echo; then it
    # finds both ended at once. torch's tie-break (the lowest rank) would blame rank 0. The
    # failure is timed by its record, or, without one, by the look before: never after its echo.
    go = {name: tmp_path / name for name in ("cause", "echo")}
    with Workers() as workers:
        cause = start(workers, when_told(go["cause"], work), rank=2)
        echo = start(workers, when_told(go["echo"], "raise SystemExit(1)"), rank=0)
        stall = Stall(workers, start, tmp_path)
        stall.hold(workers=3)
        go["cause"].touch()
        ended_unreaped(cause)
        time.sleep(0.2)
        go["echo"].touch()
        ended_unreaped(echo)
        stall.release()
        assert wait_until(lambda: workers.ended_ns(echo.pid) is not None)
        ended = {p.pid: workers.ended_ns(p.pid) or 0 for p in (cause, echo)}
        assert ended[echo.pid] - ended[cause.pid] > 0.15e9, ended
        assert (workers.status(cause.pid), workers.status(echo.pid)) == (code, 1)
        # Read, then removed: a worker that reuses the pid does not inherit its end.
        assert not os.path.exists(record_file(workers.directory, echo.pid))
        assert workers.ended()[echo.pid].status == 1


def test_a_failure_torch_reaped_first_still_bounds_the_survivors(start, tmp_path, capfd):
    # torch elastic's monitor may reap a failed worker before the finder looks: its exit status
    # is gone, and the finder reads it from the worker's record.
    go = tmp_path / "fail"
    with Workers() as workers, shutdown.bounded(workers, 0.5, name="//t:t"):
        deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
        stuck = start(workers, deaf, rank=1)
        failing = start(workers, when_told(go, "raise SystemExit(5)"), rank=0)
        stall = Stall(workers, start, tmp_path)
        stall.hold(workers=3)
        go.touch()
        assert failing.wait(timeout=10) == 5  # reaped here, as torch's monitor does
        failed_at = time.monotonic()
        stall.release()
        assert stuck.wait(timeout=10) == -signal.SIGKILL
        assert time.monotonic() - failed_at < 5
        assert workers.status(failing.pid) == 5
    assert f"worker pid {stuck.pid} still running 0.5 s" in capfd.readouterr().err
