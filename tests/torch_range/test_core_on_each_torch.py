"""The core end-to-end tests on the oldest and the newest torch the runtime supports, as README
promises (torch 2.4 to 2.15); the rest of the suite runs on the pinned one (requirements_lock.txt).

tools/setup.sh pytest installs each tests/torch_range/requirements-<version>.txt into the
virtualenv .venv-torch-<version>. For each, one test runs pytest again, in that virtualenv, on
CORE, with the virtualenv first on PATH: Bazel's Python toolchain, and so every binary and worker
of that run, is then its `python3`. That run first checks its torch (TORCH_CHECK), and each of
its tests checks that its jobs left nothing (tests/conftest.py's run_ids).
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from harness.bazel import ROOT, run, wait_for
from harness.procfs import processes_with_env

# The core tests, each named once: what each version's run runs, besides the torch check. About
# 2 minutes on 2 cores; the rest of tests/e2e runs on the pinned torch only.
CORE = [
    # What the launcher finds of each torch, and the torchrun hand-off and loopback rendezvous
    # built on what it finds, without Bazel: seconds.
    "tests/unit/test_facilities.py",
    "tests/unit/test_elastic.py",
    # `bazel run //train:model`: DistributedDataParallel on gloo, the README's example.
    "tests/e2e/test_bazel_run.py::test_bazel_run_trains_the_example_to_90_percent",
    # The root cause by the launcher's own clock: a SIGKILLed rank, not the echoes of the others
    # that torch's order would blame, 30 in-process launches of 3 ranks.
    "tests/e2e/test_root_cause.py::test_first_failed_rank_is_the_root_cause_and_its_code_the_jobs[sigkill]",
    # The failed rank's traceback, once, under its rank, and its exit code as the job's.
    "tests/e2e/test_failures.py::test_failing_rank_sets_exit_code_and_its_traceback_is_shown_once_with_its_rank",
    # The shutdown timeout: a rank deaf to SIGTERM is killed in it after another rank failed.
    "tests/e2e/test_failures.py::test_rank_stuck_and_deaf_to_sigterm_is_killed_in_bounded_time",
    # A restart: max_restarts reruns the workers after one failed, and the job succeeds.
    "tests/e2e/test_failures.py::test_transient_failure_recovers_with_max_restarts",
    # SIGKILL of the launcher: the kernel takes every worker with it.
    "tests/e2e/test_failures.py::test_sigkill_of_launcher_leaves_no_worker",
    # SIGTERM to the launcher: each rank's stacks under its rank, then every process stops.
    "tests/e2e/test_signals.py::test_stop_signal_shows_each_ranks_stacks_under_its_rank_then_stops[15]",
    # SIGUSR1 is forwarded to every rank, whose handler checkpoints; the job goes on.
    "tests/e2e/test_signals.py::test_sigusr1_reaches_every_rank_whose_handler_checkpoints_and_the_job_succeeds",
    # Warm start, both start methods: forked workers run the main as __main__.
    "tests/e2e/test_warm_start.py::test_forked_workers_run_the_main_as_main_with_a_workers_state[fork]",
    "tests/e2e/test_warm_start.py::test_forked_workers_run_the_main_as_main_with_a_workers_state[forkserver]",
    # Warm start: the root cause among forkserver workers.
    "tests/e2e/test_warm_start.py::test_first_failed_rank_is_the_root_cause_and_its_code_the_jobs[exception-forkserver]",
    # Warm start: a restart forks the workers again.
    "tests/e2e/test_warm_start.py::test_a_transient_failure_recovers_with_max_restarts[fork]",
    # py_distributed_test under `bazel test`: every rank passes, with outputs, JUnit, TEST_TMPDIR.
    "tests/e2e/test_bazel_test.py::test_every_rank_passes_with_its_outputs_junit_and_temp_files_in_test_tmpdir",
    # py_distributed_test: a failing rank fails the test with its assertion as the root cause.
    "tests/e2e/test_bazel_test.py::test_a_failing_rank_fails_the_test_with_its_assertion_as_the_root_cause",
]
TORCH_CHECK = f"{Path(__file__).relative_to(ROOT)}::test_torch_is_the_one_asked_for"
# One per tests/torch_range/requirements-<version>.txt, as tools/setup.sh installs them.
VERSIONS = sorted(
    (p.stem.removeprefix("requirements-") for p in Path(__file__).parent.glob("requirements-*")),
    key=lambda v: tuple(int(n) for n in v.split(".")),
)
ASKED = "TORCH_RANGE_VERSION"  # the torch a version's run must find, set for that run
MARK = "TORCH_RANGE_RUN"  # in every process a version's run starts, to find what it left
TIMEOUT = 600  # seconds for one version's run, which takes about 2 minutes on 2 cores
TAIL = 8000  # characters of a failed run's output shown, its short summary last


def pinned_torch() -> str:
    """requirements_lock.txt's torch: what the rest of the suite runs with."""
    lock = (ROOT / "requirements_lock.txt").read_text(encoding="utf-8")
    found = re.search(r"^torch==(\S+)$", lock, re.MULTILINE)
    assert found, "requirements_lock.txt pins no torch"
    return found[1]


def release(version: str) -> str:
    """A torch version without its build (2.4.1+cu121 is 2.4.1)."""
    return version.partition("+")[0]


def test_torch_is_the_one_asked_for():
    """This run's torch, in pytest and in the `python3` on PATH that Bazel's binaries run, is the
    one its version's test asked for (in the suite's own run, the pinned one)."""
    asked = os.environ.get(ASKED) or pinned_torch()
    on_path = subprocess.run(
        ["python3", "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    print(f"\ntorch {torch.__version__} in pytest ({sys.executable}), {on_path} on PATH")
    assert (release(torch.__version__), release(on_path)) == (asked, asked)


def leftovers(mark: str) -> list[int]:
    """The live processes a version's run started, but a Bazel server (a daemon that a run may
    have started, and which outlives it by design)."""
    found = []
    for pid in processes_with_env(MARK, mark):
        with contextlib.suppress(OSError):
            if b"A-server.jar" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def run_core(venv: Path, version: str, basetemp: Path) -> tuple[str | None, str]:
    """Runs CORE in `venv`: (what went wrong or None, output). Its process group is killed after
    TIMEOUT, and afterwards whatever the run left."""
    mark = uuid.uuid4().hex
    cmd = [venv / "bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    cmd += [f"--basetemp={basetemp}", TORCH_CHECK, *CORE]
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        ASKED: version,
        MARK: mark,
        "COLUMNS": "200",  # room for each failure's message in the short summary
    }
    try:
        done = run(cmd, env=env, timeout=TIMEOUT)
        wrong, out = (f"exit {done.returncode}" if done.returncode else None), done.stdout
    except subprocess.TimeoutExpired as expired:
        wrong, out = f"timed out after {TIMEOUT} s", str(expired.output or "")
    # Each test checks that its jobs left nothing; this also catches what a timeout cut short.
    if not wait_for(lambda: not leftovers(mark), timeout=15):
        left = leftovers(mark)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wrong = f"{wrong or 'exit 0'}, and left {left} running (now killed)"
    return wrong, out


@pytest.mark.parametrize("version", VERSIONS)
def test_core_tests_pass_on_torch(version, tmp_path, capfd):
    venv = ROOT / f".venv-torch-{version}"
    if not (venv / "bin/python").is_file():
        pytest.fail(f"no {venv.name} for torch {version}: run tools/setup.sh pytest", pytrace=False)
    # `bazel build //...` would load the BUILD.bazel that torchgen ships in the virtualenv.
    ignored = (ROOT / ".bazelignore").read_text(encoding="utf-8").split()
    assert venv.name in ignored, f".bazelignore must list {venv.name}"
    wrong, out = run_core(venv, version, tmp_path / "basetemp")
    with capfd.disabled():
        print(f"\ntorch {version}: {(out.strip().splitlines() or ['no output'])[-1]}")
    assert not wrong, f"core tests on torch {version}: {wrong}\n...\n{out[-TAIL:]}"
