"""Which GPUs a launch may claim, how many it wants, and what its workers are told: pure functions
of the environment and of NVML's answer, apart from the locks (`launch.gpu_claim`).

The pool is every GPU that NVML sees, or, where the parent set CUDA_VISIBLE_DEVICES (`bazel
test --test_env=CUDA_VISIBLE_DEVICES=2,3`, a shell, a scheduler), those it lists, by index or
UUID. A claimed GPU is named to the workers as the parent named it, so the workers' mask is the
parent's narrowed, never absolute indices that ignore it (JAX's multiprocess tests do the latter).
Each GPU is keyed by its identity on the machine, its NVML UUID, so that two jobs that see it
through different masks ("1" under CUDA_VISIBLE_DEVICES=0,1, "0" under =1) take the same lock.
Without NVML (a CPU machine given a made-up CUDA_VISIBLE_DEVICES=0,1,2,3, as the tests do) the
entries are the keys.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from py_distributed import grammar
from py_distributed.errors import UsageError

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
# NVML numbers GPUs in PCI bus order, CUDA by default fastest first: on a machine of mixed GPUs
# the same index names different GPUs. Workers given NVML's indices count as NVML does.
_ORDER_ENV = "CUDA_DEVICE_ORDER"
_UUID = re.compile(r"(GPU|MIG)-[0-9A-Za-z-]+(/\d+/\d+)?")
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Gpu:
    """One GPU of the pool."""

    key: str  # its identity across jobs: NVML's UUID, else the entry as the parent wrote it
    name: str  # as the workers' CUDA_VISIBLE_DEVICES names it: the parent's entry, or NVML's index

    @property
    def lock_file(self) -> str:
        """The name of its lock file, in the lock directory (`settings.gpus.lock_dir`)."""
        return f"py_distributed-gpu-{_FILE_SAFE.sub('_', self.key)}.lock"


@dataclass(frozen=True)
class Pool:
    """The GPUs a launch may claim, in the order it tries them."""

    gpus: tuple[Gpu, ...]
    where: str  # for messages: "CUDA_VISIBLE_DEVICES=0,1", "this machine (NVML)", "no NVML, ..."
    masked: bool  # whether the parent set CUDA_VISIBLE_DEVICES

    def __len__(self) -> int:
        return len(self.gpus)


def pool(environ: Mapping[str, str], nvml_uuids: Sequence[str] | None) -> Pool:
    """The pool of this process, from CUDA_VISIBLE_DEVICES and NVML's UUIDs by index (None: no
    NVML). An entry naming no GPU of the machine is a UsageError, not dropped as CUDA would drop
    it and every entry after it."""
    mask = environ.get(VISIBLE_ENV)
    if mask is None:
        uuids = nvml_uuids or []
        where = (
            f"NVML ({len(uuids)} GPUs)" if nvml_uuids is not None else f"no NVML, no {VISIBLE_ENV}"
        )
        return Pool(tuple(Gpu(uuid, str(index)) for index, uuid in enumerate(uuids)), where, False)
    entries = [entry.strip() for entry in mask.split(",")] if mask.strip() else []
    found: dict[str, Gpu] = {}
    for entry in entries:
        key = _key(entry, mask, nvml_uuids)
        if key in found:
            raise UsageError(
                f"{VISIBLE_ENV}={mask!r}: {found[key].name} and {entry} are one GPU; list each once"
            )
        found[key] = Gpu(key, entry)
    return Pool(tuple(found.values()), f"{VISIBLE_ENV}={mask}", True)


def _key(entry: str, mask: str, nvml_uuids: Sequence[str] | None) -> str:
    """The identity of the GPU that `entry` of CUDA_VISIBLE_DEVICES names."""
    fix = "list GPU indices or UUIDs that nvidia-smi -L shows"
    if not (grammar.is_number(entry) or _UUID.fullmatch(entry)):
        raise UsageError(f"{VISIBLE_ENV}={mask!r}: {entry!r} is no GPU index or UUID; {fix}")
    if nvml_uuids is None or entry.startswith("MIG-"):  # MIG instances: NVML lists GPUs only
        return entry
    if grammar.is_number(entry):
        if int(entry) >= len(nvml_uuids):
            raise UsageError(
                f"{VISIBLE_ENV}={mask!r}: there is no GPU {entry} here (NVML sees"
                f" {len(nvml_uuids)}); {fix}"
            )
        return nvml_uuids[int(entry)]
    # CUDA takes any unambiguous prefix of a UUID.
    matches = [uuid for uuid in nvml_uuids if uuid.startswith(entry)]
    if len(matches) != 1:
        what = "several GPUs" if matches else "no GPU of this machine"
        raise UsageError(f"{VISIBLE_ENV}={mask!r}: {entry!r} names {what}; {fix}")
    return matches[0]


def wanted(gpus: int, source: str, nproc_per_node: str, available: Pool) -> int:
    """How many GPUs of `available` this node claims: `gpus` (from `source`), else all of them for
    nproc_per_node "gpu" (one rank per visible GPU, as torchrun; none if none is visible, which
    torchrun's own check then reports). More than the pool has is a UsageError: waiting would
    never end."""
    if not gpus:
        return len(available) if nproc_per_node == "gpu" else 0
    if not available.gpus:
        raise UsageError(
            f"gpus={gpus} (from {source}): no GPU is visible here ({available.where}); run it"
            f" on a GPU machine, or list the GPUs it may take in {VISIBLE_ENV}"
        )
    if gpus > len(available):
        raise UsageError(
            f"gpus={gpus} (from {source}): {available.where} has {len(available)}"
            f" GPU{'s' if len(available) > 1 else ''};"
            f" ask for at most {len(available)}, or run it where {gpus} are visible"
        )
    return gpus


def worker_environment(claimed: Sequence[Gpu], available: Pool) -> dict[str, str]:
    """What every worker of the node is told: CUDA_VISIBLE_DEVICES, the claimed GPUs in order,
    so that local rank N's own is `cuda:N` (as torchrun's nproc_per_node "gpu" has it)."""
    changes = {VISIBLE_ENV: ",".join(gpu.name for gpu in claimed)}
    if not available.masked:
        changes[_ORDER_ENV] = "PCI_BUS_ID"
    return changes


def names(claimed: Sequence[Gpu]) -> str:
    """`claimed` for messages: "GPU 0", "GPUs 2, 3"."""
    listed = ", ".join(gpu.name for gpu in claimed)
    return f"GPU{'s' if len(claimed) > 1 else ''} {listed}"
