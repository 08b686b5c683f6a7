"""Makes the runtime importable, as //runtime's `imports = ["."]` does, and tests/ helpers; the
fixtures that e2e and multinode tests share."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from bazel_harness import BIN, bazel

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
