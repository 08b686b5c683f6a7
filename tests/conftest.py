"""Makes the runtime importable, as //runtime's `imports = ["."]` does, and tests/harness (as
`harness`, as //tests/harness:probe's `imports` does); the fixtures that the test folders share."""

import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from harness.bazel import BIN, bazel, wait_for
from harness.launch import processes_of_runs

# What a scheduler or a developer's shell may hold that would make the tests' jobs multi-node, pin
# their interfaces or mark them as workers. Tests set their own.
_SCHEDULER_VARIABLES = (
    "PET_",
    "SLURM_",
    "TF_CONFIG",
    "MASTER_ADDR",
    "MASTER_PORT",
    "WORLD_SIZE",
    "RANK",
    "GLOO_SOCKET_IFNAME",
    "NCCL_SOCKET_IFNAME",
    "TORCHELASTIC_",
    "PY_DISTRIBUTED_",
    "PROBE_",
)


@pytest.fixture(scope="session", autouse=True)
def no_scheduler_variables():
    """Every test, and every process it starts, runs without the scheduler variables above."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(_SCHEDULER_VARIABLES)]:
            patch.delenv(name)
        yield


@pytest.fixture(scope="session", autouse=True)
def signals_as_from_a_terminal():
    """A shell's background job starts with SIGINT and SIGQUIT ignored, and every process it starts
    inherits that (a new interpreter keeps an ignored SIGINT). The tests' jobs start as from a
    terminal, with the default actions, however pytest itself was started."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGQUIT)}
    if previous[signal.SIGINT] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if previous[signal.SIGQUIT] == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def built() -> Path:
    """Builds every target once; returns bazel-bin."""
    done = bazel("build", "//...")
    assert done.returncode == 0, done.stdout
    return BIN


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """Where the probes' ranks (tests/e2e/allreduce.py, seed_api.py) write their reports."""
    path = tmp_path / "probe"
    path.mkdir()
    return path


@pytest.fixture
def run_ids(built):
    """Makes fresh rendezvous ids (PET_RDZV_ID) for one test. Afterwards no process of those runs
    may be left (harness.launch.processes_of_runs): those still there after 15 s are SIGKILLed,
    by pid, and fail the test."""
    made: list[str] = []

    def make() -> str:
        made.append(f"test-{uuid.uuid4().hex}")
        return made[-1]

    yield make
    gone = wait_for(lambda: not processes_of_runs(made), timeout=15)
    orphans = [] if gone else processes_of_runs(made)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert gone, f"orphans: {orphans}"


@pytest.fixture
def run_id(run_ids) -> str:
    """One rendezvous id of `run_ids`: afterwards no process of that run may be left."""
    return run_ids()
