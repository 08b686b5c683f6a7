"""Fixtures of the e2e tests: real Bazel, real processes."""

import subprocess
from pathlib import Path

import pytest
from bazel_harness import BIN, ROOT, Exec, bazel, parse_strace, run


@pytest.fixture(scope="session")
def built() -> Path:
    """Builds every target once; returns bazel-bin."""
    done = bazel("build", "//...")
    assert done.returncode == 0, done.stdout
    return BIN


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """Where tests/e2e/allreduce.py's ranks write their reports."""
    path = tmp_path / "probe"
    path.mkdir()
    return path


@pytest.fixture
def strace(tmp_path: Path):
    """Runs a command under `strace -f -e trace=execve`; returns (result, successful execs)."""

    def trace(
        cmd, *, cwd: Path = ROOT, env: dict[str, str]
    ) -> tuple[subprocess.CompletedProcess[str], list[Exec]]:
        log = tmp_path / "strace.log"
        flags = [
            "-f",
            "-qq",
            "--seccomp-bpf",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            "-s",
            "4096",
        ]
        done = run(["strace", *flags, "-o", log, *cmd], cwd=cwd, env=env)
        return done, parse_strace(log.read_text(errors="replace"))

    return trace
