"""The build action of every py_distributed_binary: check its BUILD settings, then write its main.

Run by rules/private/distributed_main.bzl once select() has been resolved. The settings are checked
by `checks.check`, the same code that checks PET_* variables at run time, so a value has one grammar
and gets the same message in both places. A bad one fails the build with that message, naming the
target; the main is written only for settings that passed.
"""

import argparse
import sys
from collections.abc import Sequence

from py_distributed.errors import exit_on_usage_error
from py_distributed.settings import checks


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="the binary's label, for messages")
    parser.add_argument("--template", required=True, help="rules/private/main.py.tpl")
    parser.add_argument("--out", required=True, help="the main .py to write")
    parser.add_argument("--stub", required=True, help="runfiles path of the binary's stub")
    parser.add_argument("--main", required=True, help="runfiles path of the user's main")
    parser.add_argument("--worker-entry", required=True, choices=("pythonpath", "stub"))
    parser.add_argument("--test", action="store_true", help="a py_distributed_test's main")
    parser.add_argument("--setting", action="append", default=[], help="KNOB=VALUE from BUILD")
    parser.add_argument("--torchrun-arg", action="append", default=[], help="a further flag")
    args = parser.parse_args(argv)

    settings = dict(setting.split("=", 1) for setting in args.setting)
    with exit_on_usage_error(args.target):
        checks.check_build_values(settings, args.torchrun_arg)
    with open(args.template, encoding="utf-8") as template:
        text = template.read()
    values = {
        "label": args.target,
        "target": repr(args.target),
        "stub": repr(args.stub),
        "main": repr(args.main),
        "build_values": repr(settings),
        "torchrun_args": repr(args.torchrun_arg),
        "worker_entry": repr(args.worker_entry),
        "test": repr(args.test),
    }
    for key, value in values.items():
        text = text.replace(f"{{{key}}}", value)
    with open(args.out, "w", encoding="utf-8") as out:
        out.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
