"""The launch pipeline in-process, with real workers: its status, and os.environ afterwards."""

import os
import sys

import pytest
import torch

from py_distributed.errors import EXIT_USAGE
from py_distributed.launch import pipeline
from py_distributed.launch.entry import InterpreterEntry
from py_distributed.protocol import RUN_ID_ENV


def job(tmp_path, body: str, **explicit: str) -> pipeline.Job:
    """A job whose workers run `body` as a plain script with the bare interpreter."""
    script = tmp_path / "worker.py"
    script.write_text(body, encoding="utf-8")
    settings = {"nproc_per_node": "2", **explicit}
    return pipeline.Job(
        "unit-job", settings, "test", lambda: InterpreterEntry((str(script),), {}), ["x"]
    )


@pytest.mark.parametrize(("body", "status"), [("pass", 0), ("import sys; sys.exit(3)", 3)])
def test_launch_returns_the_jobs_status_and_leaves_os_environ_exactly_as_it_was(
    tmp_path, monkeypatch, body, status
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # torchrun would write it
    monkeypatch.setenv("PET_STANDALONE", "1")  # the launcher owns it: ignored, not removed
    before = dict(os.environ)
    assert pipeline.launch(job(tmp_path, body)) == status
    assert dict(os.environ) == before


def test_workers_get_the_markers_and_the_jobs_environment(tmp_path):
    out = tmp_path / "seen"
    body = (
        "import os, sys\n"
        f"open({str(out)!r} + os.environ['RANK'], 'w').write(repr(sorted(\n"
        "    (k, v) for k, v in os.environ.items() if k.startswith(('PY_DISTRIBUTED_', 'PET_'))\n"
        ")) + repr(sys.argv[1:]))\n"
    )
    base = job(tmp_path, body)
    assert pipeline.launch(pipeline.Job(**{**vars(base), "environment": {"EXTRA": "1"}})) == 0
    seen = (tmp_path / "seen0").read_text()
    assert f"('PY_DISTRIBUTED_LAUNCHER_PID', '{os.getpid()}')" in seen
    assert "PY_DISTRIBUTED_RUN_ID" in seen and seen.endswith("['x']")


def test_a_bad_value_is_exit_usage_with_one_line_and_os_environ_kept(tmp_path, capfd):
    before = dict(os.environ)
    assert pipeline.launch(job(tmp_path, "pass", nproc_per_node="0")) == EXIT_USAGE
    assert dict(os.environ) == before
    err = capfd.readouterr().err
    assert (
        err == "unit-job: error: nproc_per_node='0' (from test): use an int in 1..1024 or one"
        " of auto, cpu, gpu, xpu\n"
    )


def test_a_broken_torch_is_not_called_bad_input(tmp_path, monkeypatch):
    def broken() -> int:
        raise RuntimeError("CUDA driver initialization failed")

    monkeypatch.setattr(torch.cuda, "device_count", broken)
    before = dict(os.environ)
    with pytest.raises(RuntimeError, match="CUDA driver initialization failed"):
        pipeline.launch(job(tmp_path, "pass", nproc_per_node="gpu"))
    assert dict(os.environ) == before


def test_a_worker_of_another_launch_refuses_to_launch(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "ours")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "theirs")
    assert pipeline.launch(job(tmp_path, "pass")) == EXIT_USAGE


assert sys.platform.startswith("linux")
