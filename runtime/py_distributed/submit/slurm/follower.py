"""Following a queued job to its end, as `bazel run` of the binary itself would show it.

While the job waits in the queue, one status line (`_StatusLine`); once it runs, the output of
every node as it comes (`_Tail`); at the end, the job's exit status as the submitter's own. The
submitter's stop signals (`Stop`) cancel the job (`cancel`), and the follower still waits until
SLURM reports it ended: SLURM ends its processes on every node only after its KillWait, and a
submitter that returned earlier would leave them running unseen.
"""

import contextlib
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from py_distributed import grammar
from py_distributed.protocol import exit_code_of_signal
from py_distributed.submit.slurm.client import Client
from py_distributed.submit.slurm.request import Job

# The submitter's own stop signals: each cancels the job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How often the job is looked at while it waits in the queue, and while it runs.
_QUEUE_POLL_SECONDS = 1.0
_RUN_POLL_SECONDS = 0.25
# How long slurmctld may not answer for the job before the submitter gives up following it.
_UNANSWERED_SECONDS = 60
# Base states after which nothing of the job runs any more (scontrol shows COMPLETING until then).
_ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)


class Stop:
    """The first stop signal the submitter got; a second one exits at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            os.write(2, b"not waiting for the job to end: it is being cancelled\n")
            os._exit(exit_code_of_signal(signum))
        self.signum = signum


def follow(
    target: str,
    job: Job,
    job_id: str,
    client: Client,
    stop: Stop,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Shows the job until it ends; its exit status. A stop signal cancels it, once, and the
    follower goes on until SLURM ended it. An unanswered question is asked again, for a while:
    slurmctld may be busy or restarting."""
    view = _View(target, job, job_id, submitted=clock())
    cancelled_by: int | None = None
    answered = view.submitted
    while True:
        if stop.signum is not None and cancelled_by is None:
            cancelled_by = stop.signum
            view.status.finish()
            cancel(target, client, job_id)
        now = clock()
        state = client.job(job_id)
        if state is None and now - answered > _UNANSWERED_SECONDS:
            return view.lost()
        if state is not None:
            answered = now
            view.draw(state, now)
            if _base(state) != "PENDING":
                view.tail.pump(sys.stdout)
            if _base(state) in _ENDED:
                return view.ended(state, now, cancelled_by)
        sleep(_pause(state))


def cancel(target: str, client: Client, job_id: str) -> None:
    """Cancels the job, saying so; scancel's complaint, if any, is shown and the wait goes on."""
    print(f"{target}: cancelling job {job_id} (scancel)", file=sys.stderr)
    failed = client.cancel(job_id)
    if failed is not None:
        print(f"{target}: scancel {job_id}: {failed}", file=sys.stderr)


def exit_status(state: Mapping[str, str], cancelled_by: int | None) -> int:
    """The submitter's exit status for the ended job (scontrol's fields): 128+N for its own stop
    signal N, else the batch script's ExitCode=CODE:SIGNAL as one exit status."""
    if cancelled_by is not None:
        return exit_code_of_signal(cancelled_by)
    if _base(state) == "COMPLETED":
        return 0
    code, _, sig = state.get("ExitCode", "0:0").partition(":")
    if grammar.is_number(code) and int(code):
        return int(code)
    if grammar.is_number(sig) and int(sig):
        return exit_code_of_signal(int(sig))
    return 1  # ended badly without a code of its own: NODE_FAIL, BOOT_FAIL, ...


def _pause(state: Mapping[str, str] | None) -> float:
    """Until the job is looked at again: often once it runs, for its output to come as written."""
    waiting = state is None or _base(state) == "PENDING"
    return _QUEUE_POLL_SECONDS if waiting else _RUN_POLL_SECONDS


def _base(state: Mapping[str, str]) -> str:
    return state.get("JobState", "UNKNOWN")


class _View:
    """What the submitter shows of the job: its status line while it waits and where it runs
    (stderr), its nodes' output (stdout), how it ended."""

    def __init__(self, target: str, job: Job, job_id: str, submitted: float) -> None:
        self.target, self.job_id, self.logs = target, job_id, job.logs
        self.submitted = submitted
        self.status = _StatusLine(sys.stderr)
        self.tail = _Tail(job.output_files(job_id))

    def draw(self, state: Mapping[str, str], now: float) -> None:
        """The status line: the queue's reason while the job waits, then once where it runs."""
        prefix, elapsed = f"{self.target}: job {self.job_id} {_base(state)}", self._elapsed(now)
        if _base(state) == "PENDING":
            reason = state.get("Reason", "None")
            self.status.show(f"{prefix} ({reason}), {elapsed} in the queue")
        elif not self.status.finished:
            where = state.get("NodeList", "(null)")
            where = "" if where == "(null)" else f" on {where}"
            self.status.show(f"{prefix}{where}, {elapsed} after submission")
            self.status.finish()

    def ended(self, state: Mapping[str, str], now: float, cancelled_by: int | None) -> int:
        """The output's last lines, even unfinished ones, and the exit status."""
        self.tail.pump(sys.stdout, final=True)
        code = exit_status(state, cancelled_by)
        print(
            f"{self.target}: job {self.job_id} {_base(state)} after {self._elapsed(now)}:"
            f" exit status {code}",
            file=sys.stderr,
        )
        return code

    def lost(self) -> int:
        print(
            f"{self.target}: error: slurmctld knows no job {self.job_id} any more; its output:"
            f" {self.logs}/{self.job_id}.*",
            file=sys.stderr,
        )
        return 1

    def _elapsed(self, now: float) -> str:
        minutes, second = divmod(int(now - self.submitted), 60)
        return f"{minutes}:{second:02d}"


@dataclass
class _StatusLine:
    """One line that changes in place on a terminal; on anything else, a line per change."""

    stream: TextIO
    shown: str | None = None
    finished: bool = False

    def show(self, text: str) -> None:
        if self.stream.isatty():
            self.stream.write(f"\r\x1b[K{text}")
        elif _without_clock(text) != _without_clock(self.shown or ""):
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = text

    def finish(self) -> None:
        if self.shown is not None and not self.finished and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
        self.finished = True


def _without_clock(text: str) -> str:
    return re.sub(r"\d+:\d\d", "", text)


class _Tail:
    """Writes out the lines files gain, each file from where it was left. Files are opened anew
    each time: on NFS an open is what brings another host's writes (close-to-open consistency)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._offsets = dict.fromkeys(paths, 0)

    def pump(self, out: TextIO, *, final: bool = False) -> None:
        for path, offset in self._offsets.items():
            with contextlib.suppress(FileNotFoundError):
                with open(path, "rb") as source:
                    source.seek(offset)
                    data = source.read()
                complete = data if final else data[: data.rfind(b"\n") + 1]
                if complete:
                    out.buffer.write(complete)
                    self._offsets[path] = offset + len(complete)
        out.flush()
