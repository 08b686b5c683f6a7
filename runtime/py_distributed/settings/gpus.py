"""The GPU settings of a launch, held to their grammar: how many GPUs a node claims for its ranks
(`gpus`, PY_DISTRIBUTED_GPUS), and how long it waits for them (PY_DISTRIBUTED_GPU_WAIT).

They are this project's, not torchrun's: torchrun takes every GPU it sees. The build checks a
binary's `gpus` with `count` and `fits` (from `build_check`), and every launch checks them again
with its run-time variables (`launch.gpu_claim`), so a value gets one message in both places:
`gpus='-1' (from BUILD): ...`.
"""

from collections.abc import Mapping

from py_distributed import grammar
from py_distributed.errors import UsageError

# The run-time override of a binary's `gpus` attribute.
GPUS_ENV = "PY_DISTRIBUTED_GPUS"
# Seconds a launch waits for its GPUs to come free before it gives up (`launch.gpu_claim`).
WAIT_ENV = "PY_DISTRIBUTED_GPU_WAIT"
# Where the claims' lock files are: /dev/shm, the one directory that Bazel's sandbox leaves
# writable and shared between tests on every version (/tmp is each action's own from Bazel 7,
# /var/lock read-only). Another directory keeps the claims of independent CI runs that share one
# machine, each with a made-up pool (CUDA_VISIBLE_DEVICES=0,1,2,3 on a CPU machine), apart.
LOCK_DIR_ENV = "PY_DISTRIBUTED_GPU_LOCK_DIR"
LOCK_DIR_DEFAULT = "/dev/shm"
# A binary started by hand waits up to an hour, one line a minute; a test waits less
# (`bazel_test.gpu_wait`).
WAIT_DEFAULT = 3600.0
_MAX = 1024  # as nproc_per_node's


def count(explicit: str, source: str, environ: Mapping[str, str]) -> tuple[int, str]:
    """The GPUs this node claims and where that came from: GPUS_ENV (empty counts as unset), else
    `explicit` (from `source`: "BUILD"); 0 claims none (unless nproc_per_node is "gpu")."""
    text, source = (
        (environ[GPUS_ENV], GPUS_ENV) if environ.get(GPUS_ENV) else (explicit or "0", source)
    )
    if not (grammar.is_number(text) and int(text) <= _MAX):
        raise UsageError(
            f"gpus={text!r} (from {source}): use an int in 0..{_MAX}, the GPUs each node claims"
            " for its ranks"
        )
    return int(text), source


def fits(nproc_per_node: str, gpus: int, source: str) -> None:
    """Refuses more ranks than GPUs: two ranks of one job on one GPU are what NCCL refuses
    ("Duplicate GPU detected"), so the job would fail in its first collective, not here."""
    if gpus and grammar.is_number(nproc_per_node) and int(nproc_per_node) > gpus:
        raise UsageError(
            f"gpus={gpus} (from {source}) is fewer than nproc_per_node={nproc_per_node}: NCCL"
            " cannot give two ranks one GPU; set gpus to at least nproc_per_node, or"
            ' nproc_per_node = "gpu" for one rank per claimed GPU'
        )


def wait(default: str, environ: Mapping[str, str]) -> float:
    """Seconds to wait for free GPUs: WAIT_ENV, else `default` (a test's, from TEST_TIMEOUT), else
    WAIT_DEFAULT."""
    text = environ.get(WAIT_ENV) or default
    if not text:
        return WAIT_DEFAULT
    try:
        return grammar.seconds(text)
    except ValueError as error:
        raise UsageError(f"{WAIT_ENV}={text!r}: {error}, 0 to fail at once") from None


def lock_dir(environ: Mapping[str, str]) -> str:
    """The directory of the claims' lock files: LOCK_DIR_ENV, else /dev/shm."""
    return environ.get(LOCK_DIR_ENV) or LOCK_DIR_DEFAULT
