"""A binary's BUILD settings, in the one file its settings rule writes into its runfiles.

`rules/private/` declares every setting once (attributes.bzl), resolves select(), and has
`build_check` hold the values to their grammar and write this file, as JSON. The binary's generated
main (`py_distributed.binary`), its `<name>.slurm` submitter and its `<name>.k8s` manifests all read
the file, so no value is written twice.
"""

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class BuildSettings:
    """What BUILD says of one py_distributed_binary or py_distributed_test."""

    target: str  # its label, for messages: "//train:model"
    stub: str  # runfiles path of its executable, which workers re-enter
    main: str  # runfiles path of the user's torchrun-style script
    worker_entry: str = "stub"  # "stub" or "pythonpath" (`launch.entry`)
    hang_timeout: str = ""  # seconds, as BUILD wrote it (`checks.hang_timeout`); "" unset
    gpus: int = 0  # GPUs each node claims for its ranks (`settings.gpus`)
    test: bool = False  # a py_distributed_test: its launcher speaks Bazel's test protocol
    # torchrun settings BUILD gives, select() resolved, by knob (`sources.KNOBS`); PET_* win
    values: Mapping[str, str] = field(default_factory=dict)
    torchrun_args: tuple[str, ...] = ()


def read(path: str) -> BuildSettings:
    """The settings in the file at `path`."""
    with open(path, encoding="utf-8") as source:
        data = json.load(source)
    return BuildSettings(**{**data, "torchrun_args": tuple(data.get("torchrun_args", ()))})


def write(path: str, settings: BuildSettings) -> None:
    """Writes `settings` to `path`, as indented JSON that a person opening the runfiles can read."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump(asdict(settings), out, indent=2, sort_keys=True)
        out.write("\n")
