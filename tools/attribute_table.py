"""The attribute table of README.md, generated from `py_distributed_binary`'s own docstring.

The macro's `Args:` section and signature are the one source of truth for its attributes. A table
written by hand drifts from them (a default changes, a knob gains `select()`), so this script
renders it, `--write` puts it between the markers of each file, and `--check` (run by
tests/lint/test_docs.py) fails when a file's table is not what the docstring says. Starlark is
valid Python syntax here, so `ast` reads the .bzl file.

    python3 tools/attribute_table.py --write README.md
"""

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "rules/private/py_distributed_binary.bzl"
BEGIN, END = "<!-- attribute-table:begin -->", "<!-- attribute-table:end -->"
_ARG = re.compile(r"^  (\*{0,2}\w+): (.*)$")
_RUN_TIME = re.compile(r"\s*Run time: (.+)\.$")
_DEFAULT_TEXT = re.compile(r"\s*Default: (.+?)\.(?=\s|$)")  # "Default: prose." fills the column
_DEFAULT_BARE = re.compile(r"\s*Default [^\s:]+\.(?=\s|$)")  # "Default 1." repeats the column


def _args(doc: str) -> dict[str, str]:
    """The `Args:` section (Google style, continuation lines indented) as name -> one-line doc."""
    args: dict[str, str] = {}
    name = ""
    for line in doc.partition("\nArgs:\n")[2].splitlines():
        if not line.startswith("  "):
            break
        if match := _ARG.match(line):
            name, args[match[1]] = match[1], match[2]
        else:
            args[name] += " " + line.strip()
    return args


def _literal(node: ast.expr) -> str:
    """A default as Starlark writes it: strings in double quotes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return '"' + node.value.replace('"', '\\"') + '"'
    return ast.unparse(node)


def table(source: Path = SOURCE) -> str:
    """The markdown table of `py_distributed_binary`'s attributes, from `source`."""
    module = ast.parse(source.read_text(encoding="utf-8"))
    macro = next(
        n
        for n in module.body
        if isinstance(n, ast.FunctionDef) and n.name == "py_distributed_binary"
    )
    docs = _args(ast.get_docstring(macro) or "")
    params = [a.arg for a in macro.args.args]
    defaults = dict(zip(reversed(params), reversed(macro.args.defaults), strict=False))
    rows = ["| attribute | default | meaning | run-time override |", "|---|---|---|---|"]
    for param in params:
        if param not in docs:
            sys.exit(f"{source}: argument {param!r} has no entry in the docstring's Args:")
        meaning, default, override = docs[param], "", ""
        if match := _RUN_TIME.search(meaning):
            meaning, override = meaning[: match.start()], re.sub(r"PET_\w+", r"`\g<0>`", match[1])
        if match := _DEFAULT_TEXT.search(meaning):
            default, meaning = match[1], meaning[: match.start()] + meaning[match.end() :]
        elif param in defaults:
            default = f"`{_literal(defaults[param])}`"
            meaning = _DEFAULT_BARE.sub("", meaning)
        cells = [f"`{param}`", default, meaning.replace("|", "\\|"), override]
        rows.append("|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|")
    if macro.args.kwarg:
        where, _, names = docs[f"**{macro.args.kwarg.arg}"].partition(": ")
        listed = [n.strip() for n in names.split(",") if not n.strip().startswith("and ")]
        rows.append(f"| {', '.join(f'`{n}`' for n in listed)}, … | | {where} | |")
    return "\n".join(rows) + "\n"


def _split(path: Path) -> tuple[str, str, str]:
    text = path.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN + "\n")
    body, end, tail = rest.partition(END)
    if not (begin and end):
        sys.exit(f"{path}: no {BEGIN} ... {END} markers")
    return head + begin, body, end + tail


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", nargs="+", type=Path, metavar="FILE", help="fail on drift")
    mode.add_argument("--write", nargs="+", type=Path, metavar="FILE", help="rewrite the table")
    args = parser.parse_args(argv)
    want, status = table(), 0
    for path in args.check or args.write:
        head, body, tail = _split(path)
        if args.write:
            path.write_text(head + want + tail, encoding="utf-8")
        elif body != want:
            diff = difflib.unified_diff(
                body.splitlines(True), want.splitlines(True), f"{path} (table)", f"{SOURCE.name}"
            )
            print(
                f"{path}: attribute table differs from {SOURCE.relative_to(ROOT)}'s docstring;"
                f" run tools/attribute_table.py --write {path}\n" + "".join(diff),
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
