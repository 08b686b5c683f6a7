"""The runtime's layout: imports only go down the table below, no module imports itself back in a
circle, and no module outgrows what a reader takes in at once.

Every import counts, those inside functions and under TYPE_CHECKING too: a circle hidden in a
function is still a circle. Read from the source with `ast`, nothing is imported.
"""

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
PACKAGE = RUNTIME / "py_distributed"

# What each part of the runtime may import of the runtime, from the top down: the entry points
# (thin: parse, then call `launch`), the launcher, then what it is told and what runs in workers.
ALLOWED = {
    "__init__": {"cluster", "training", "worker"},  # the public names, loaded when first used
    "binary": {"bazel_test", "errors", "launch", "runfiles_env", "settings", "worker"},
    "training": {"cluster", "errors", "launch", "runfiles_env", "worker"},
    "bazel_test": {"launch"},
    "submit": {"cluster", "errors", "grammar", "protocol", "runfiles_env", "settings"},
    "launch": {"cluster", "errors", "grammar", "protocol", "runfiles_env", "settings", "worker"},
    "settings": {"cluster", "errors", "grammar"},
    "cluster": {"errors", "grammar"},
    "worker": {"protocol"},
    "runfiles_env": {"errors"},
    "errors": {"protocol"},
    "grammar": set(),
    "protocol": set(),
}
MAX_LINES = 300


def modules() -> dict[str, Path]:
    """Every runtime module by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(RUNTIME).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The runtime modules that the module at `path` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert not node.level, f"{path}: relative import of {node.module}"
            # `from pkg import name`: the module pkg.name, else a name that pkg defines.
            for alias in node.names:
                module = f"{node.module}.{alias.name}"
                found.add(module if module in known else node.module)
    return {name for name in found if name in known}


def part(module: str) -> str:
    """The row of ALLOWED that `module` belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) for name, path in known.items()}


def test_every_part_of_the_runtime_is_in_the_table():
    assert {part(module) for module in modules()} == set(ALLOWED)


def test_imports_only_go_down_the_table():
    upward = [
        f"{module} imports {target} ({part(module)} -> {part(target)})"
        for module, targets in graph().items()
        for target in targets
        if part(target) != part(module) and part(target) not in ALLOWED[part(module)]
    ]
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_back_through_others():
    edges = graph()
    cycles = []
    state: dict[str, str] = {}  # module -> "open" while on the path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_runtime_module_is_over_300_lines(module):
    lines = len(modules()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines; split it by concern"


def test_the_check_sees_a_circle_hidden_in_a_function(tmp_path):
    # The checker itself: an import inside a function body counts.
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from py_distributed.launch import pipeline\n")
    known = {"py_distributed.launch", "py_distributed.launch.pipeline"}
    assert imports(source, known) == {"py_distributed.launch.pipeline"}
