"""The launcher's only ways to change os.environ: inside a block, and undone when it ends.

torch elastic hands each worker a copy of the launcher's os.environ, and torch writes variables of
its own there (OMP_NUM_THREADS, TORCHELASTIC_*). A program that called maybe_run_training carries
on after the workers finish, with its environment exactly as it was.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping

# Changes to an environment: a value to set, or None to unset.
Changes = Mapping[str, str | None]


@contextlib.contextmanager
def restored() -> Iterator[None]:
    """Puts os.environ back exactly as it was when the block ends, however it ends."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        _reset(saved)


@contextlib.contextmanager
def captured() -> Iterator[dict[str, str | None]]:
    """Collects what the block writes into os.environ, and undoes it when the block ends."""
    saved = dict(os.environ)
    written: dict[str, str | None] = {}
    try:
        yield written
    finally:
        written.update({k: v for k, v in os.environ.items() if saved.get(k) != v})
        written.update({k: None for k in saved if k not in os.environ})
        _reset(saved)


def apply(changes: Changes) -> None:
    """Writes `changes` into os.environ; call it inside `restored()`."""
    for key, value in changes.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _reset(saved: Mapping[str, str]) -> None:
    for key in [key for key in os.environ if key not in saved]:
        del os.environ[key]
    apply({key: value for key, value in saved.items() if os.environ.get(key) != value})
