"""The GPU pool and claim (launch/gpus.py, launch/gpu_claim.py, settings/gpus.py): which GPUs a
launch may take, how CUDA_VISIBLE_DEVICES maps through the parent's mask, and the locks."""

import os
import re

import pytest

from py_distributed.errors import UsageError
from py_distributed.launch import environment, gpu_claim, gpus
from py_distributed.settings import gpus as gpu_settings
from py_distributed.settings.config import TorchrunConfig

UUIDS = ["GPU-aaaa-0000", "GPU-bbbb-1111", "GPU-cccc-2222", "GPU-cccd-3333"]


def keys(pool):
    return [(gpu.key, gpu.name) for gpu in pool.gpus]


def test_without_a_mask_the_pool_is_every_gpu_nvml_sees_keyed_by_uuid():
    pool = gpus.pool({}, UUIDS)
    assert keys(pool) == [(uuid, str(index)) for index, uuid in enumerate(UUIDS)]
    # NVML's indices are PCI bus order: the workers count the same way.
    assert gpus.worker_environment(pool.gpus[1:3], pool) == {
        "CUDA_VISIBLE_DEVICES": "1,2",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


def test_a_mask_narrows_the_pool_and_the_workers_see_the_parents_names():
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "3, GPU-bbbb"}, UUIDS)
    assert keys(pool) == [("GPU-cccd-3333", "3"), ("GPU-bbbb-1111", "GPU-bbbb")]
    assert gpus.worker_environment(pool.gpus[1:], pool) == {"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}


def test_one_gpu_seen_through_two_masks_has_one_lock():
    first = gpus.pool({"CUDA_VISIBLE_DEVICES": "0,1"}, UUIDS).gpus[1]
    second = gpus.pool({"CUDA_VISIBLE_DEVICES": "1"}, UUIDS).gpus[0]
    assert first.lock_file == second.lock_file == "py_distributed-gpu-GPU-bbbb-1111.lock"


def test_without_nvml_the_masks_entries_are_the_pool():
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, None)
    assert keys(pool) == [(str(i), str(i)) for i in range(4)]
    assert (
        gpus.pool({}, None).gpus == () and gpus.pool({"CUDA_VISIBLE_DEVICES": ""}, None).gpus == ()
    )


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ("0,7", "CUDA_VISIBLE_DEVICES='0,7': there is no GPU 7 here (NVML sees 4)"),
        ("0,x", "CUDA_VISIBLE_DEVICES='0,x': 'x' is no GPU index or UUID"),
        ("GPU-ccc", "'GPU-ccc' names several GPUs"),
        ("GPU-ffff", "'GPU-ffff' names no GPU of this machine"),
        ("1,GPU-bbbb-1111", "1 and GPU-bbbb-1111 are one GPU; list each once"),
    ],
)
def test_a_mask_naming_no_gpu_of_the_machine_is_one_line(mask, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        gpus.pool({"CUDA_VISIBLE_DEVICES": mask}, UUIDS)


def test_how_many_are_wanted():
    four = gpus.pool({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, None)
    assert gpus.wanted(2, "BUILD", "2", four) == 2
    assert gpus.wanted(0, "BUILD", "gpu", four) == 4  # every GPU, as torchrun's "gpu"
    assert gpus.wanted(0, "BUILD", "4", four) == 0
    assert gpus.wanted(0, "BUILD", "gpu", gpus.pool({}, None)) == 0  # torchrun's check says why
    with pytest.raises(UsageError) as more:
        gpus.wanted(5, "PY_DISTRIBUTED_GPUS", "gpu", four)
    assert str(more.value) == (
        "gpus=5 (from PY_DISTRIBUTED_GPUS): CUDA_VISIBLE_DEVICES=0,1,2,3 has 4 GPUs; ask for at"
        " most 4, or run it where 5 are visible"
    )
    with pytest.raises(UsageError, match=r"no GPU is visible here \(no NVML, no CUDA_VISIBLE"):
        gpus.wanted(1, "BUILD", "1", gpus.pool({}, None))


@pytest.mark.parametrize("text", ["-1", "two", "1025", "1.5"])
def test_a_bad_gpus_is_one_line_naming_where_it_came_from(text):
    with pytest.raises(UsageError, match=rf"gpus='{text}' \(from PY_DISTRIBUTED_GPUS\): use an"):
        gpu_settings.count("2", "BUILD", {"PY_DISTRIBUTED_GPUS": text})
    assert gpu_settings.count("2", "BUILD", {"PY_DISTRIBUTED_GPUS": ""}) == (2, "BUILD")


def test_the_wait_comes_from_the_variable_else_the_tests_else_an_hour():
    assert gpu_settings.wait("30", {"PY_DISTRIBUTED_GPU_WAIT": "5"}) == 5
    assert gpu_settings.wait("30", {}) == 30
    assert gpu_settings.wait("", {}) == gpu_settings.WAIT_DEFAULT
    with pytest.raises(UsageError, match=r"PY_DISTRIBUTED_GPU_WAIT='-1': use a number"):
        gpu_settings.wait("", {"PY_DISTRIBUTED_GPU_WAIT": "-1"})


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def claim(pool, want, lock_dir, wait, clock=None, name="//t:a"):
    clock = clock or Clock()
    asked = f"gpus={want} (from BUILD)"
    return gpu_claim.claim(
        pool,
        want,
        str(lock_dir),
        wait,
        name=name,
        asked=asked,
        holder=f"{name} (pid 7)",
        clock=clock,
        sleep=clock.sleep,
    )


def test_claims_are_disjoint_and_a_released_claim_is_free_again(tmp_path):
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, None)
    first, got = claim(pool, 2, tmp_path, 0)
    second, other = claim(pool, 2, tmp_path, 0, name="//t:b")
    assert [g.name for g in got] == ["0", "1"] and [g.name for g in other] == ["2", "3"]
    with pytest.raises(UsageError) as busy:
        claim(pool, 1, tmp_path, 0, name="//t:c")
    assert str(busy.value) == (
        "gpus=1 (from BUILD): no 1 of the 4 GPUs of CUDA_VISIBLE_DEVICES=0,1,2,3 came free in 0 s"
        " (GPUs 0, 1 held by //t:a (pid 7); GPUs 2, 3 held by //t:b (pid 7)); wait longer with"
        " PY_DISTRIBUTED_GPU_WAIT=SECONDS, or stop those jobs"
    )
    gpu_claim.release(first)
    again, got = claim(pool, 2, tmp_path, 0)
    assert [g.name for g in got] == ["0", "1"]
    gpu_claim.release(again + second)


def test_a_job_takes_all_it_wants_or_none(tmp_path):
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "0,1,2"}, None)
    held, _ = claim(pool, 2, tmp_path, 0)
    with pytest.raises(UsageError):
        claim(pool, 2, tmp_path, 0)
    # The failed try left GPU 2 free.
    last, got = claim(pool, 1, tmp_path, 0)
    assert [g.name for g in got] == ["2"]
    gpu_claim.release(held + last)


def test_a_waiting_job_says_so_at_once_then_once_a_minute(tmp_path, capsys):
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "0"}, None)
    held, _ = claim(pool, 1, tmp_path, 0)
    clock = Clock()
    with pytest.raises(UsageError):
        claim(pool, 1, tmp_path, 150, clock=clock, name="//t:b")
    lines = capsys.readouterr().err.splitlines()
    assert lines == 3 * [
        "//t:b: waiting for 1 free GPU of CUDA_VISIBLE_DEVICES=0 (GPU 0 held by //t:a (pid 7));"
        " giving up after 150 s (PY_DISTRIBUTED_GPU_WAIT)"
    ]  # at 0, 60 and 120 s
    assert clock.now == pytest.approx(150)
    gpu_claim.release(held)


def test_a_forked_worker_does_not_keep_the_claim(tmp_path):
    pool = gpus.pool({"CUDA_VISIBLE_DEVICES": "0"}, None)
    held, _ = claim(pool, 1, tmp_path, 0)
    child = os.fork()
    if child == 0:  # the forked worker: its copy of the descriptor is closed
        try:
            os.fstat(held[0])
            os._exit(1)
        except OSError:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    gpu_claim.release(held)


def config(nproc):
    return TorchrunConfig(nproc, 1, 1, 0, "c10d", "", None, "x", "", True)


def test_held_sets_the_workers_mask_and_the_rank_count_for_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_claim.nvml, "uuids", lambda: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    monkeypatch.setenv("PY_DISTRIBUTED_GPU_LOCK_DIR", str(tmp_path))
    with environment.restored():
        with gpu_claim.held(config("gpu"), "2", "BUILD", "", name="//t:a") as changed:
            assert changed.nproc_per_node == "2"
            assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5"
        with gpu_claim.held(config("gpu"), "0", "BUILD", "", name="//t:a") as changed:
            assert changed.nproc_per_node == "3"  # every GPU of the pool
        with gpu_claim.held(config("2"), "0", "BUILD", "", name="//t:a") as unchanged:
            assert unchanged == config("2")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6"


def test_more_ranks_than_gpus_is_refused_before_any_claim():
    refused = pytest.raises(
        UsageError, match=r"gpus=1 \(from BUILD\) is fewer than nproc_per_node=2"
    )
    with refused, gpu_claim.held(config("2"), "1", "BUILD", "", name="//t:a"):
        pass
