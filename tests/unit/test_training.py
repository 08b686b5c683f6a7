"""maybe_run_training's launcher-side checks: what can travel to the workers, what they run."""

import pytest

from py_distributed import training
from py_distributed.errors import UsageError


def test_kwargs_round_trip_with_their_types():
    kwargs = {"lr": 1e-300, "none": None, "pair": (1, "2"), "text": "a b=c\n--d ü", "n": {"k": [1]}}
    received = training._received_kwargs({training.KWARGS_ENV: training._pickled(kwargs)})
    assert received == kwargs
    assert {k: type(v) for k, v in received.items()} == {k: type(v) for k, v in kwargs.items()}


def test_only_the_launchers_workers_receive_kwargs():
    assert training._received_kwargs({}) is None


def test_a_value_that_cannot_be_pickled_is_named():
    with pytest.raises(UsageError, match=r"^training_kwargs\['fn'\] cannot be sent to the workers"):
        training._pickled({"ok": 1, "fn": lambda: None})


def test_kwargs_too_large_for_the_environment_are_refused():
    with pytest.raises(UsageError, match="pass large values as a file path"):
        training._pickled({"blob": "x" * 200_000})


@pytest.mark.parametrize(
    ("module_name", "target"),
    [
        ("my_pkg.main", ["-m", "my_pkg.main"]),
        ("my_pkg/main.py", ["my_pkg/main.py"]),
        ("main.py", ["main.py"]),
    ],
)
def test_module_name_is_a_module_or_a_script(module_name, target):
    assert training._target(module_name) == target


@pytest.mark.parametrize("module_name", ["no such", "1pkg.main", "pkg..main"])
def test_a_module_name_that_is_neither_is_refused(module_name):
    with pytest.raises(UsageError, match=f"module_name={module_name!r} is neither"):
        training._target(module_name)
