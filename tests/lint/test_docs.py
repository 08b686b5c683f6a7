"""README.md and docs/ against the code: the generated attribute table, links, the pip command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PIP_TORCH = re.compile(r"pip install torch\b[^`\n]*")


def prose(page: Path) -> str:
    """The page without its fenced code blocks, where `](` may be code."""
    return _FENCE.sub("", page.read_text(encoding="utf-8"))


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    headings = re.findall(r"^#+ (.+)$", prose(page), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_attribute_tables_match_the_macros_docstring():
    marked = [p for p in PAGES if "<!-- attribute-table:begin -->" in p.read_text("utf-8")]
    assert ROOT / "README.md" in marked
    done = subprocess.run(
        [sys.executable, "tools/attribute_table.py", "--check", *map(str, marked)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_relative_link_points_at_an_existing_file_and_heading():
    broken = []
    for page in PAGES:
        for target in _LINK.findall(prose(page)):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_workspace_pip_command_is_the_same_everywhere():
    # tests/e2e/test_consumer_workspace.py installs exactly README's packages; the docs must agree.
    commands = {page.name: _PIP_TORCH.findall(page.read_text("utf-8")) for page in PAGES}
    (readme,) = commands["README.md"]
    assert "psutil" in readme, "//runtime imports psutil"
    assert all(c == readme for found in commands.values() for c in found), commands
