"""Makes the runtime importable, as //runtime's `imports = ["."]` does, and tests/ helpers; the
fixtures that e2e and multinode tests share."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest
from bazel_harness import BIN, bazel


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
