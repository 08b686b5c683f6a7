"""Worker detection, and a worker's exit status, on real processes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import py_distributed
from py_distributed.launch.pipeline import is_foreign_worker
from py_distributed.protocol import RUN_ID_ENV
from py_distributed.worker import is_distributed_worker


@pytest.mark.parametrize(
    ("env", "worker"),
    [
        ({}, False),
        # A scheduler (Kubeflow PyTorchJob) fills the launcher's pod with node-level values.
        ({"WORLD_SIZE": "4", "RANK": "1", "PET_NNODES": "4", "PET_NODE_RANK": "1"}, False),
        # A worker of some other torchrun, not of ours.
        ({"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2", "RANK": "0"}, False),
        # Our marker leaked into an unrelated process (no torchrun around it).
        ({RUN_ID_ENV: "abc"}, False),
        ({RUN_ID_ENV: "abc", "TORCHELASTIC_RUN_ID": "other"}, False),
        ({RUN_ID_ENV: "abc", "TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2", "RANK": "1"}, True),
    ],
)
def test_worker_is_detected_by_our_marker_only(env, worker):
    assert is_distributed_worker(env) is worker


@pytest.mark.parametrize(
    ("env", "foreign"),
    [
        ({}, False),
        ({RUN_ID_ENV: "abc"}, False),
        ({RUN_ID_ENV: "abc", "TORCHELASTIC_RUN_ID": "abc"}, False),
        ({RUN_ID_ENV: "abc", "TORCHELASTIC_RUN_ID": "other"}, True),
    ],
)
def test_worker_of_another_launch_is_told_apart(env, foreign):
    assert is_foreign_worker(env) is foreign


RUNTIME = os.path.dirname(os.path.dirname(py_distributed.__file__))


def run_worker(tmp_path, body: str, *args: str, env=None) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "user_main.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    runner = (
        f"from py_distributed.worker.run import run_main; run_main({str(script)!r}, {list(args)!r})"
    )
    return subprocess.run(
        [sys.executable, "-c", runner],
        env={**os.environ, "PYTHONPATH": RUNTIME, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_script_runs_as_main_with_its_own_argv_and_directory_first_on_path(tmp_path):
    done = run_worker(
        tmp_path,
        """
        import json, sys
        print(json.dumps([__name__, __file__, sys.argv, sys.path[0]]))
        """,
        "a b",
        "--k=v",
    )
    assert done.returncode == 0, done.stderr
    name, file, argv, first = json.loads(done.stdout)
    assert (name, argv[1:], first) == ("__main__", ["a b", "--k=v"], str(tmp_path))
    assert file == argv[0] == str(tmp_path / "user_main.py")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("pass", 0),
        ("import sys; sys.exit(7)", 7),
        ("import sys; sys.exit(None)", 0),
        ("import sys; sys.exit('bad thing')", 1),
        ("raise ValueError('boom')", 1),
    ],
)
def test_exit_status_is_the_scripts(tmp_path, body, code):
    assert run_worker(tmp_path, body).returncode == code


def test_non_daemon_threads_and_executor_work_finish_before_exit(tmp_path):
    done = run_worker(
        tmp_path,
        """
        import threading, time
        from concurrent.futures import ThreadPoolExecutor
        threading.Thread(target=lambda: (time.sleep(0.1), print("thread done", flush=True))).start()
        ThreadPoolExecutor(1).submit(lambda: (time.sleep(0.4), print("job done", flush=True)))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["thread done", "job done"]


def test_exit_handlers_run_and_output_is_flushed(tmp_path):
    done = run_worker(
        tmp_path,
        """
        import atexit, sys
        atexit.register(lambda: print("handler ran"))
        sys.stdout.write("unflushed")
        """,
    )
    assert done.stdout == "unflushedhandler ran\n"


def test_exception_goes_to_the_error_file_only_when_there_is_one(tmp_path):
    # The launcher prints the error file with the rank; printing it here too would show it twice.
    error_file = tmp_path / "error.json"
    env = {"TORCHELASTIC_ERROR_FILE": str(error_file)}
    done = run_worker(tmp_path, "raise ValueError('boom')", env=env)
    assert (done.returncode, done.stderr) == (1, "")
    assert "ValueError: boom" in json.dumps(json.loads(error_file.read_text())["message"])


def test_exception_is_printed_without_an_error_file(tmp_path):
    done = run_worker(tmp_path, "raise ValueError('boom')")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: boom" in done.stderr
