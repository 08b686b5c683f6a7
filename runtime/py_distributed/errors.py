"""How failures reach the user: one line for bad input, an exit code a caller can trust."""

import contextlib
import sys
from collections.abc import Iterator

from py_distributed.protocol import exit_code_of_signal

# The exit code of a bad input found before any worker started, as argparse and torchrun use.
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad input found before any worker started; its message is one line naming value and fix."""


def exit_code_of_worker(exitcode: int) -> int:
    """The job's exit code for its first failed worker, as torch elastic reports it.

    torch elastic gives -N for a worker ended by signal N; a failure that left no code is still one.
    """
    return exit_code_of_signal(-exitcode) if exitcode < 0 else exitcode or 1


def print_usage_error(name: str, error: UsageError) -> None:
    """The one line of a bad input: `NAME: error: MESSAGE`."""
    print(f"{name}: error: {error}", file=sys.stderr)


@contextlib.contextmanager
def exit_on_usage_error(name: str) -> Iterator[None]:
    """Turns a UsageError into its one line and exit code EXIT_USAGE."""
    try:
        yield
    except UsageError as error:
        print_usage_error(name, error)
        sys.exit(EXIT_USAGE)
