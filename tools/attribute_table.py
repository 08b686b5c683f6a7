"""The attribute table of README.md, generated from the attributes' own docs.

Two sources, each the one truth for its rows: the torchrun settings are the attribute dict
`SETTINGS` of rules/private/attributes.bzl (each attribute's `doc` and `default`), and the macro's
own arguments (name, srcs, main, deps, k8s_*, py_binary_rule, the pass-through `**kwargs`) are
`py_distributed_binary`'s docstring and signature. A table written by hand drifts from them (a
default changes, a knob gains `select()`), so this script renders it, `--write` puts it between
the markers of each file, and `--check` (run by tests/lint/test_docs.py) fails when a file's table
is not what the sources say. Starlark is valid Python syntax here, so `ast` reads the .bzl files.

A default the doc states, as BUILD writes it ("Default 1." where the attribute holds "1"; "Default:
prose." for a default that is not a value), wins over the declared one; "Run time: VARIABLE." fills
the override column.

    python3 tools/attribute_table.py --write README.md
"""

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACRO = ROOT / "rules/private/py_distributed_binary.bzl"
SETTINGS = ROOT / "rules/private/attributes.bzl"
# The settings' rows follow the macro's arguments that say what the binary runs.
_SETTINGS_AFTER = "deps"
BEGIN, END = "<!-- attribute-table:begin -->", "<!-- attribute-table:end -->"
_ARG = re.compile(r"^  (\*{0,2}\w+): (.*)$")
_RUN_TIME = re.compile(r"\s*Run time: (.+)\.$")
_DEFAULT_TEXT = re.compile(r"\s*Default: (.+?)\.(?=\s|$)")  # "Default: prose." fills the column
# "Default 1." moves from the meaning to the column; "Default None: what it means." stays in both.
_DEFAULT_VALUE = re.compile(r"\s*Default ([^\s:]+)(?:(\.)(?=\s|$)|(?=:))")
_PASSED_ON = re.compile(r"(passed unchanged to `\w+`): (.+)")


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


def _settings(source: Path = SETTINGS) -> dict[str, tuple[str, ast.expr | None]]:
    """Each torchrun setting of `source`'s SETTINGS dict: its doc on one line, its default."""
    module = ast.parse(source.read_text(encoding="utf-8"))
    (found,) = [
        node.value
        for node in module.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["SETTINGS"]
    ]
    assert isinstance(found, ast.Dict), f"{source}: SETTINGS is no dict literal"
    settings = {}
    for key, value in zip(found.keys, found.values, strict=True):
        assert isinstance(key, ast.Constant) and isinstance(value, ast.Call), ast.unparse(value)
        keywords = {k.arg: k.value for k in value.keywords}
        doc = keywords.get("doc")
        if not (isinstance(doc, ast.Constant) and isinstance(doc.value, str)):
            sys.exit(f"{source}: setting {key.value!r} has no doc")
        settings[key.value] = (" ".join(doc.value.split()), keywords.get("default"))
    return settings


def table(macro_source: Path = MACRO, settings_source: Path = SETTINGS) -> str:
    """The markdown table of `py_distributed_binary`'s attributes, from the two sources."""
    module = ast.parse(macro_source.read_text(encoding="utf-8"))
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
            sys.exit(f"{macro_source}: argument {param!r} has no entry in the docstring's Args:")
        rows.append(_row(param, docs[param], defaults.get(param)))
        if param == _SETTINGS_AFTER:
            rows += [_row(name, *setting) for name, setting in _settings(settings_source).items()]
    if macro.args.kwarg:
        passed_on = _PASSED_ON.search(docs[f"**{macro.args.kwarg.arg}"])
        if not passed_on:
            sys.exit(f"{macro_source}: **{macro.args.kwarg.arg} does not say where it is passed")
        where, names = passed_on.groups()
        listed = [n.strip() for n in names.split(",") if not n.strip().startswith("and ")]
        rows.append(f"| {', '.join(f'`{n}`' for n in listed)}, … | | {where} | |")
    return "\n".join(rows) + "\n"


def _row(name: str, meaning: str, declared: ast.expr | None) -> str:
    """One attribute's row: its doc split into the default, the meaning and the override."""
    default, override = "", ""
    if match := _RUN_TIME.search(meaning):
        meaning, override = (
            meaning[: match.start()],
            re.sub(r"(?:PET|PY_DISTRIBUTED)_\w+", r"`\g<0>`", match[1]),
        )
    if match := _DEFAULT_TEXT.search(meaning):
        default, meaning = match[1], meaning[: match.start()] + meaning[match.end() :]
    elif match := _DEFAULT_VALUE.search(meaning):
        default = f"`{match[1]}`"
        if match[2]:
            meaning = meaning[: match.start()] + meaning[match.end() :]
    elif declared is not None:
        default = f"`{_literal(declared)}`"
    cells = [f"`{name}`", default, meaning.replace("|", "\\|"), override]
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


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
                body.splitlines(True), want.splitlines(True), f"{path} (table)", "the sources"
            )
            print(
                f"{path}: attribute table differs from {MACRO.relative_to(ROOT)}'s docstring and"
                f" {SETTINGS.relative_to(ROOT)}'s docs;"
                f" run tools/attribute_table.py --write {path}\n" + "".join(diff),
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
