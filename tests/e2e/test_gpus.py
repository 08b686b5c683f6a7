"""GPU claims through real Bazel on a CPU machine (tests/e2e/gpu_claim.py): a made-up pool of 4
GPUs (CUDA_VISIBLE_DEVICES=0,1,2,3), 2-GPU py_distributed_tests run side by side, a SIGKILLed
launcher's GPUs, a request the pool can never meet. The lock files go to a directory of their own
under /dev/shm (PY_DISTRIBUTED_GPU_LOCK_DIR), which Bazel's sandbox shares with this process."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from itertools import combinations
from pathlib import Path

import pytest
from harness.bazel import BIN, ROOT, bazel, run, wait_for

TARGET = "//tests/e2e:gpu_claim_test"
BINARY = BIN / "tests/e2e/gpu_claim_test"
WAITING = f"{TARGET}: waiting for 2 free GPUs of CUDA_VISIBLE_DEVICES=0,1,2,3"


@pytest.fixture(scope="module")
def binary() -> Path:
    """The test target's binary, built (it is manual: `bazel build //...` leaves it out)."""
    done = bazel("build", TARGET)
    assert done.returncode == 0, done.stdout
    return BINARY


@pytest.fixture
def shm():
    """A directory under /dev/shm with `locks` and `records` in it, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="py_distributed-test-", dir="/dev/shm"))
    (path / "locks").mkdir()
    (path / "records").mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def records(directory: Path) -> dict[str, list[dict[str, object]]]:
    """Each launch's ranks' records, by run id."""
    found: dict[str, list[dict[str, object]]] = {}
    for path in sorted(directory.glob("*.json")):
        record = json.loads(path.read_text())
        found.setdefault(str(record["run"]), []).append(record)
    return found


def test_four_two_gpu_tests_side_by_side_never_share_a_gpu(shm):
    done = bazel(
        "test",
        TARGET,
        "--runs_per_test=4",
        "--local_test_jobs=4",
        "--jobs=4",
        "--nocache_test_results",
        "--test_env=CUDA_VISIBLE_DEVICES=0,1,2,3",
        f"--test_env=PY_DISTRIBUTED_GPU_LOCK_DIR={shm / 'locks'}",
        f"--test_env=GPU_CLAIM_RECORDS={shm / 'records'}",
    )
    assert done.returncode == 0, done.stdout
    logs = sorted((ROOT / "bazel-testlogs/tests/e2e/gpu_claim_test").glob("run_*_of_4/test.log"))
    assert len(logs) == 4, logs
    # Two got their GPUs at once; the other two waited, and said so, once each.
    waited = [log.read_text().count(WAITING) for log in logs]
    assert sorted(waited) == [0, 0, 1, 1], [log.read_text() for log in logs]
    launches = records(shm / "records")
    assert len(launches) == 4, launches
    held = []
    for ranks in launches.values():
        # One rank per claimed GPU, each seeing both: its own is cuda:LOCAL_RANK.
        assert sorted(r["local_rank"] for r in ranks) == [0, 1], ranks
        (visible,) = {str(r["visible"]) for r in ranks}
        gpus = visible.split(",")
        assert len(set(gpus)) == 2 and set(gpus) <= {"0", "1", "2", "3"}, ranks
        start = min(float(str(r["start"])) for r in ranks)
        end = max(float(str(r["end"])) for r in ranks)
        held.append((set(gpus), start, end))
    for (gpus_a, start_a, end_a), (gpus_b, start_b, end_b) in combinations(held, 2):
        overlapping = start_a < end_b and start_b < end_a
        assert not (overlapping and gpus_a & gpus_b), held


def launch(binary: Path, shm: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [binary],
        env={
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "0,1",
            "PY_DISTRIBUTED_GPU_LOCK_DIR": str(shm / "locks"),
            "GPU_CLAIM_RECORDS": str(shm / "records"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_sigkilled_launchers_gpus_are_free_again_at_once(binary, shm):
    first = launch(binary, shm, GPU_CLAIM_SLEEP="60")
    try:
        # Its ranks run: it holds both GPUs.
        assert wait_for(lambda: len(list((shm / "records").glob("*.started"))) == 2, 60)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # No wait at all: the kernel dropped the locks with the launcher.
        second = launch(binary, shm, GPU_CLAIM_SLEEP="0", PY_DISTRIBUTED_GPU_WAIT="0")
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0, out
        (ranks,) = records(shm / "records").values()
        assert {r["visible"] for r in ranks} == {"0,1"}, ranks
    finally:
        # Its ranks, asleep in their session, end with it (PR_SET_PDEATHSIG), or here.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_asking_for_more_gpus_than_the_machine_has_fails_at_once_with_one_line(binary, shm):
    started = time.monotonic()
    env = {
        "CUDA_VISIBLE_DEVICES": "0,1,2,3",
        "PY_DISTRIBUTED_GPUS": "5",
        "PY_DISTRIBUTED_GPU_LOCK_DIR": str(shm / "locks"),
    }
    done = run([binary], env=env, timeout=60)
    assert done.returncode == 2, done.stdout
    assert done.stdout == (
        f"{TARGET}: error: gpus=5 (from PY_DISTRIBUTED_GPUS): CUDA_VISIBLE_DEVICES=0,1,2,3 has 4"
        " GPUs; ask for at most 4, or run it where 5 are visible\n"
    )
    # Before torch is imported: no wait, no workers.
    assert time.monotonic() - started < 10
    assert not list((shm / "locks").iterdir())
