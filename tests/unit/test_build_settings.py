"""The settings file: the build action writes what BUILD says, checked, and nothing else."""

import json

import pytest

from py_distributed.errors import EXIT_USAGE
from py_distributed.settings import build, build_check

# The settings rule's attributes as Bazel hands them over, select() resolved (settings.bzl).
ATTRIBUTES = {
    "nproc_per_node": "4",
    "nnodes": "",
    "max_restarts": 0,
    "rdzv_backend": "c10d",
    "rdzv_endpoint": "",
    "rdzv_conf": {"timeout": "9", "join_timeout": "600"},
    "torchrun_args": ["--tee=3"],
    "worker_entry": "pythonpath",
    "start_method": "",
    "hang_timeout": "90",
    "gpus": 4,
}


def check(tmp_path, attributes, *flags):
    out = tmp_path / "settings.json"
    build_check.main(
        [
            "--target=//train:model",
            f"--out={out}",
            "--stub=ws/train/model",
            "--main=ws/train/model.py",
            f"--attributes={json.dumps(attributes)}",
            *flags,
        ]
    )
    return build.read(str(out))


def test_the_file_holds_what_build_says_as_pet_variables_spell_it(tmp_path):
    assert check(tmp_path, ATTRIBUTES, "--test") == build.BuildSettings(
        target="//train:model",
        stub="ws/train/model",
        main="ws/train/model.py",
        worker_entry="pythonpath",
        hang_timeout="90",
        gpus=4,
        test=True,
        # Empty values are left to the cluster description or torchrun's defaults.
        values={
            "nproc_per_node": "4",
            "max_restarts": "0",
            "rdzv_backend": "c10d",
            "rdzv_conf": "join_timeout=600,timeout=9",
        },
        torchrun_args=("--tee=3",),
    )


def test_a_bad_value_fails_with_one_line_and_writes_no_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        check(tmp_path, {**ATTRIBUTES, "nproc_per_node": "0"})
    assert exit_.value.code == EXIT_USAGE
    assert capsys.readouterr().err == (
        "//train:model: error: nproc_per_node='0' (from BUILD): use an int in 1..1024 or one of"
        " auto, cpu, gpu, xpu\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_bad_hang_timeout_fails_the_build_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        check(tmp_path, {**ATTRIBUTES, "hang_timeout": "soon"})
    assert exit_.value.code == EXIT_USAGE
    assert capsys.readouterr().err == (
        "//train:model: error: hang_timeout='soon' (from BUILD): use a number of seconds, 0 for"
        " none\n"
    )


@pytest.mark.parametrize(
    ("gpus", "nproc", "message"),
    [
        (-1, "2", "gpus='-1' (from BUILD): use an int in 0..1024, the GPUs each node claims"),
        (2, "4", "gpus=2 (from BUILD) is fewer than nproc_per_node=4: NCCL cannot give two ranks"),
    ],
)
def test_a_bad_gpus_fails_the_build_with_one_line(tmp_path, capsys, gpus, nproc, message):
    with pytest.raises(SystemExit) as exit_:
        check(tmp_path, {**ATTRIBUTES, "gpus": gpus, "nproc_per_node": nproc})
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"//train:model: error: {message}") and err.count("\n") == 1, err
