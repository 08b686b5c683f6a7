"""Fixtures of the e2e tests only; tests/conftest.py has the shared ones."""

import subprocess
from pathlib import Path

import pytest
from harness.bazel import ROOT, Exec, parse_strace, run


@pytest.fixture
def strace(tmp_path: Path):
    """Runs a command under `strace -ff -e trace=execve`; returns (result, successful execs)."""

    def trace(
        cmd, *, cwd: Path = ROOT, env: dict[str, str]
    ) -> tuple[subprocess.CompletedProcess[str], list[Exec]]:
        log = tmp_path / "strace.log"
        flags = [
            "-ff",
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
        return done, parse_strace(log)

    return trace
