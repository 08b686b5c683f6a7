"""Choosing a warm start, and what the forkserver imports: the decisions before any worker starts.
tests/e2e/test_warm_start.py starts the workers."""

import os

import psutil
import pytest

import py_distributed
from py_distributed.cluster import single_machine
from py_distributed.errors import EXIT_USAGE
from py_distributed.launch import pipeline, torchrun, warm_start
from py_distributed.launch.entry import InterpreterEntry, Work, run_script
from py_distributed.settings import config

PROGRAM = os.path.abspath(__file__)
SPAWNED = InterpreterEntry((PROGRAM,), {"RUNFILES_DIR": "/runfiles"}, Work(PROGRAM, run_script))


def test_spawn_keeps_the_spawn_entry():
    assert warm_start.chosen("spawn", SPAWNED, name="unit") is SPAWNED


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_warm_start_runs_the_program_in_torchruns_words(method):
    entry = warm_start.chosen(method, SPAWNED, name="unit")
    assert entry.torchrun_entry() == [f"--start-method={method}", "--run-path", PROGRAM]
    assert entry.environment()["RUNFILES_DIR"] == "/runfiles"
    assert entry.work == SPAWNED.work


def test_the_forkserver_finds_the_programs_modules_on_the_launchers_path():
    entry = warm_start.chosen("forkserver", SPAWNED, name="unit")
    python_path = str(entry.environment()["PYTHONPATH"]).split(os.pathsep)
    runtime = os.path.dirname(os.path.dirname(py_distributed.__file__))  # where it is imported from
    assert runtime in python_path


@pytest.mark.parametrize(
    ("method", "work", "reason"),
    [
        ("fork", None, "the program has no main file for forked workers to run"),
        ("forkserver", None, "the program has no main file for forked workers to run"),
        # The forkserver's workers get their function pickled: by reference only.
        ("forkserver", Work(PROGRAM, lambda program: None), "cannot send the workers"),
    ],
)
def test_where_a_warm_start_cannot_apply_workers_spawn_after_one_line(capsys, method, work, reason):
    spawned = InterpreterEntry((PROGRAM,), {}, work)
    assert warm_start.chosen(method, spawned, name="unit") is spawned
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"unit: start_method={method}: ") and reason in line
    assert line.endswith("; starting workers with spawn")


def test_prepare_hands_torch_elastic_the_warm_function_and_the_program():
    resolved = config.resolve(
        {"nproc_per_node": "2", "start_method": "fork"}, "BUILD", (), {}, single_machine()
    )
    entry = warm_start.chosen("fork", SPAWNED, name="unit")
    launch = torchrun.prepare(resolved, entry, ["--", "a"], {}, name="unit", scratch="/tmp/unit")
    assert launch.config.start_method == "fork"
    assert launch.entrypoint_args == [PROGRAM, "--", "a"]
    assert callable(launch.entrypoint) and launch.entrypoint.__name__ == "_forked_worker"
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ  # only for the launcher's checks


def test_declared_imports_are_the_main_files_top_level_absolute_imports(tmp_path):
    main = tmp_path / "main.py"
    main.write_text(
        "from __future__ import annotations\n"
        "import os, numpy.linalg as la\n"
        "from torch import nn\n"
        "from . import sibling\n"
        "from .pkg import thing\n"
        "import os\n"
        "try:\n    import optional\nexcept ImportError:\n    pass\n"
        "if True:\n    import conditional\n"
        "def f():\n    import inside\n"
    )
    assert warm_start.declared_imports(str(main)) == ["os", "numpy.linalg", "torch"]


def test_a_main_that_cannot_be_read_or_parsed_declares_nothing(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import (\n")
    assert warm_start.declared_imports(str(broken)) == []
    assert warm_start.declared_imports(str(tmp_path / "missing.py")) == []


def test_a_launch_stops_the_forkserver_it_started_also_after_a_bad_input(tmp_path):
    def forkservers() -> list[psutil.Process]:
        children = psutil.Process().children()
        return [p for p in children if "multiprocessing.forkserver" in " ".join(p.cmdline())]

    # Bad only for torchrun's own checks, which run once the server has started.
    (tmp_path / "file").write_text("not a directory")
    job = pipeline.Job(
        "unit",
        {"nproc_per_node": "2", "start_method": "forkserver"},
        "BUILD",
        lambda: SPAWNED,
        torchrun_args=[f"--log-dir={tmp_path / 'file'}"],
    )
    assert forkservers() == []
    during: list[list[psutil.Process]] = []
    assert pipeline.launch(job, observe=lambda _: during.append(forkservers())) == EXIT_USAGE
    assert len(during) == 1 and len(during[0]) == 1, "one server runs while the launch does"
    assert forkservers() == []
