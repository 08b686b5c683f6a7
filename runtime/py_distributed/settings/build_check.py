"""The build action of every py_distributed_binary: check its BUILD settings, then write them.

Run by rules/private/settings.bzl once select() has been resolved, with the settings rule's
attributes as JSON. The values are checked by `checks.check`, the same code that checks PET_*
variables at run time, so a value has one grammar and gets the same message in both places. A bad
one fails the build with that message, naming the target; the settings file (`build.write`) is
written only for settings that passed.
"""

import argparse
import json
import sys
from collections.abc import Sequence

from py_distributed.errors import exit_on_usage_error
from py_distributed.settings import build, checks, gpus


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="the binary's label, for messages")
    parser.add_argument("--out", required=True, help="the settings file to write")
    parser.add_argument("--stub", required=True, help="runfiles path of the binary's stub")
    parser.add_argument("--main", required=True, help="runfiles path of the user's main")
    parser.add_argument("--test", action="store_true", help="a py_distributed_test's settings")
    parser.add_argument("--attributes", required=True, help="the torchrun settings, as JSON")
    args = parser.parse_args(argv)

    attributes = json.loads(args.attributes)
    torchrun_args = attributes.pop("torchrun_args")
    worker_entry = attributes.pop("worker_entry")  # Bazel checked it (`values`)
    hang_timeout = attributes.pop("hang_timeout")
    gpus_text = str(attributes.pop("gpus"))
    # Only what BUILD says: the rest is left to the cluster description or torchrun's defaults.
    values = {knob: text for knob, value in attributes.items() if (text := _as_variable(value))}
    with exit_on_usage_error(args.target):
        checks.check_build_values(values, torchrun_args)
        checks.hang_timeout(hang_timeout, "BUILD", {})
        gpu_count, _ = gpus.count(gpus_text, "BUILD", {})
        gpus.fits(values.get("nproc_per_node", "1"), gpu_count, "BUILD")
    settings = build.BuildSettings(
        target=args.target,
        stub=args.stub,
        main=args.main,
        worker_entry=worker_entry,
        hang_timeout=hang_timeout,
        gpus=gpu_count,
        test=args.test,
        values=values,
        torchrun_args=tuple(torchrun_args),
    )
    build.write(args.out, settings)


def _as_variable(value: object) -> str:
    """An attribute's value as its PET_* variable spells it: rdzv_conf's dict as "k=v,k2=v2"."""
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in sorted(value.items()))
    return str(value)


if __name__ == "__main__":
    main(sys.argv[1:])
