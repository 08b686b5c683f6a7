"""Commands and Bazel, run with cleanup: this checkout's ROOT and BIN (bazel-bin), `run` and
`bazel`, `wait_for`, scratch workspaces that use this checkout, and the reader of strace logs."""

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "bazel-bin"


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Runs `cmd` in its own session; on timeout its process group is killed, and TimeoutExpired
    raised with what it wrote."""
    with subprocess.Popen(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as expired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise subprocess.TimeoutExpired(proc.args, timeout, output=out) from expired
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def bazel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(["bazel", *args], env=env)


@dataclass(frozen=True)
class Exec:
    """One successful execve seen by strace."""

    pid: int
    path: str
    argv: str  # strace's rendering of the argument vector


_EXECVE = re.compile(r'^execve\("((?:[^"\\]|\\.)*)", (\[.*?\]),.* = 0$')


def parse_strace(prefix: Path) -> list[Exec]:
    """The successful execve calls in the logs of `strace -ff -o PREFIX -e trace=execve`.

    One log per process (PREFIX.PID): in a shared log, concurrent execs split into
    `<unfinished ...>` and `<... resumed>` lines that no line pattern can read.
    """
    return [
        Exec(int(log.suffix[1:]), m[1], m[2])
        for log in prefix.parent.glob(f"{prefix.name}.*")
        for m in map(_EXECVE.match, log.read_text(errors="replace").splitlines())
        if m
    ]


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.2) -> bool:
    """Polls `predicate` every `step` seconds for `timeout` seconds; whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def scratch_workspace(path: Path, packages: dict[str, str]) -> Path:
    """A workspace at `path` that uses this checkout as README's WORKSPACE section says, with a
    BUILD file per package (`""` is the root); run `bazel shutdown` in it when done."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "WORKSPACE").write_text(
        f"""workspace(name = "consumer")

local_repository(name = "rules_py_distributed", path = "{ROOT}")

load("@rules_py_distributed//tools/bazel4_offline:repositories.bzl", "bazel4_offline_repositories")

bazel4_offline_repositories(path = "{ROOT}/tools/bazel4_offline")

load("@rules_py_distributed//rules:repositories.bzl", "py_distributed_dependencies")

py_distributed_dependencies()
"""
    )
    (path / ".bazelrc").write_text((ROOT / ".bazelrc").read_text())
    for package, build in packages.items():
        (path / package).mkdir(parents=True, exist_ok=True)
        (path / package / "BUILD.bazel").write_text(build)
    return path
