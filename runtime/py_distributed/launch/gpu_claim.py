"""A launch's claim on its GPUs: one lock file per GPU, held for the job's life.

Bazel counts GPUs at best (`resources:gpu:N`, from 6.1) and never says which ones a test got, so
the launcher takes them itself, as TensorFlow's and JAX's --run_under scripts do, but in
/dev/shm, which Bazel's sandbox leaves shared and writable (they lock in /var/lock, which it makes
read-only). A lock is `flock(LOCK_EX | LOCK_NB)` on `py_distributed-gpu-<UUID>.lock`: the kernel
drops it when the launcher ends, however it ends, so a SIGKILLed job leaves no stale claim. A job
takes all its GPUs or none, so two jobs that each hold half of what the other wants cannot wait for
each other; when too few are free it waits, with one line at once and then one a minute, up to
PY_DISTRIBUTED_GPU_WAIT seconds, then fails with one line naming who holds them.

The lock files are not inherited: spawned workers never see the descriptors (Python opens them
close-on-exec), and a worker forked from the launcher closes its copies (`_forget_in_child`). The
claim is the launcher's, which lives as long as the job: its workers die with it (PR_SET_PDEATHSIG,
`worker.run`), and what they leave running of their own must not keep GPUs claimed for a job
that has ended.
"""

import contextlib
import dataclasses
import errno
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from py_distributed.errors import UsageError
from py_distributed.launch import environment, gpus, nvml
from py_distributed.settings import gpus as gpu_settings
from py_distributed.settings.config import TorchrunConfig

# The first line about waiting comes at once, so that a log shows why the job has not started; then
# one a minute, which a long wait does not flood.
NOTICE_EVERY = 60.0
_POLL = 0.25  # seconds between tries: a freed GPU is taken within a blink of a test's length

_held: set[int] = set()  # the descriptors of this process's claims


@contextlib.contextmanager
def held(
    config: TorchrunConfig,
    explicit: str,
    source: str,
    wait_default: str,
    *,
    name: str,
) -> Iterator[TorchrunConfig]:
    """Claims the GPUs this node's ranks need, for the block, and yields `config` with
    nproc_per_node "gpu" made the number claimed; `config` itself where none are wanted.

    Sets CUDA_VISIBLE_DEVICES (and CUDA_DEVICE_ORDER) in os.environ for the workers, until the
    block ends: enter it before torch counts devices (`torchrun.prepare`).
    `explicit` is the `gpus` setting from `source`; `wait_default` a test's wait (`bazel_test`).
    """
    count, count_source = gpu_settings.count(explicit, source, os.environ)
    gpu_settings.fits(config.nproc_per_node, count, count_source)
    if not count and config.nproc_per_node != "gpu":
        yield config
        return
    wait = gpu_settings.wait(wait_default, os.environ)
    available = gpus.pool(os.environ, nvml.uuids())
    want = gpus.wanted(count, count_source, config.nproc_per_node, available)
    if not want:
        yield config
        return
    lock_dir = gpu_settings.lock_dir(os.environ)
    asked = f"gpus={count} (from {count_source})" if count else "nproc_per_node='gpu'"
    # The pid alone is ambiguous: each of Bazel's sandboxes has its own pid 1, 2, ...
    holder = f"{name} (pid {os.getpid()}, run {config.rdzv_id[:8]})"
    descriptors, claimed = claim(
        available, want, lock_dir, wait, name=name, asked=asked, holder=holder
    )
    try:
        with environment.restored():
            environment.apply(gpus.worker_environment(claimed, available))
            if config.nproc_per_node == "gpu":
                config = dataclasses.replace(config, nproc_per_node=str(len(claimed)))
            yield config
    finally:
        release(descriptors)


def claim(
    available: gpus.Pool,
    want: int,
    lock_dir: str,
    wait: float,
    *,
    name: str,
    asked: str,
    holder: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[int], list[gpus.Gpu]]:
    """Locks `want` GPUs of `available`, the first free ones in pool order; returns the lock
    descriptors and the GPUs. Waits up to `wait` seconds for them, saying so on stderr; `asked`
    is the setting that asked for them ("gpus=2 (from BUILD)"), `holder` what the lock files say
    of this job to those that wait for it."""
    started = clock()
    notice_at = started
    while True:
        got, busy = _try(available, want, lock_dir, holder)
        if got is not None:
            return got
        now = clock()
        if now - started >= wait:
            raise UsageError(
                f"{asked}: no {want} of the {len(available)} GPUs of {available.where} came free"
                f" in {wait:g} s ({_holders(busy, lock_dir)}); wait longer with"
                f" {gpu_settings.WAIT_ENV}=SECONDS, or stop those jobs"
            )
        if now >= notice_at:
            print(
                f"{name}: waiting for {want} free GPU{'s' if want > 1 else ''} of {available.where}"
                f" ({_holders(busy, lock_dir)}); giving up after {wait:g} s"
                f" ({gpu_settings.WAIT_ENV})",
                file=sys.stderr,
                flush=True,
            )
            notice_at = now + NOTICE_EVERY
        sleep(min(_POLL, max(0.0, started + wait - now)))


def release(descriptors: Sequence[int]) -> None:
    """Gives the GPUs of `descriptors` back (closing a descriptor drops its lock)."""
    for fd in descriptors:
        _held.discard(fd)
        os.close(fd)


def _try(
    available: gpus.Pool, want: int, lock_dir: str, holder: str
) -> tuple[tuple[list[int], list[gpus.Gpu]] | None, list[gpus.Gpu]]:
    """`want` GPUs locked, or None and nothing held; and the GPUs found held by others."""
    descriptors: list[int] = []
    claimed: list[gpus.Gpu] = []
    busy: list[gpus.Gpu] = []
    for gpu in available.gpus:
        fd = _lock(os.path.join(lock_dir, gpu.lock_file), holder)
        if fd is None:
            busy.append(gpu)
            continue
        descriptors.append(fd)
        claimed.append(gpu)
        if len(claimed) == want:
            return (descriptors, claimed), busy
    release(descriptors)
    return None, busy


def _lock(path: str, holder: str) -> int | None:
    """The descriptor of `path`, locked, with `holder` written into it; None if another holds it.

    The file is made writable by everyone: /dev/shm is shared by every user of the machine, whose
    jobs must be able to take a GPU that another user's job has given back.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:  # another user's file that is not writable: a lock still works
        fd = _open_read_only(path)
    except OSError as error:
        raise UsageError(
            f"cannot claim GPUs in {os.path.dirname(path)} ({error.strerror}); set"
            f" {gpu_settings.LOCK_DIR_ENV} to a directory every job on this machine can write"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    _held.add(fd)
    with contextlib.suppress(OSError):  # the holder is for messages only
        os.fchmod(fd, 0o666)
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}\n".encode(), 0)
    return fd


def _open_read_only(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _holders(busy: Sequence[gpus.Gpu], lock_dir: str) -> str:
    """Who holds `busy`, as their lock files say: "GPUs 0, 1 held by //a:t (pid 7)". The files
    are read, not locked: a probe's lock would make another job's try fail."""
    by_holder: dict[str, list[gpus.Gpu]] = {}
    for gpu in busy:
        try:
            with open(os.path.join(lock_dir, gpu.lock_file), encoding="utf-8") as lock:
                text = lock.read(4096).strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        by_holder.setdefault(text or "another job", []).append(gpu)
    return "; ".join(f"{gpus.names(held)} held by {who}" for who, held in by_holder.items())


def _forget_in_child() -> None:
    """In a process forked from the launcher (a worker of start_method fork): close its copies of
    the claim's descriptors, which would otherwise keep the claim after the launcher ended."""
    for fd in list(_held):
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
