"""The docs name only what exists: every file path and `brev.` module that docs/architecture.md
names in `code`, and every path of docs/development.md's layout, is in the tree.

A path may be written from the repository's root (`brev/server/ingest.py`), from `brev/`
(`server/ingest.py`) or from `brev/server/` (`services/fleet.py`, `reconciler/loop.py`), as a
bare file name in a table row that names its folder (`brev/agent/` ... `uplink.py`), and with a
brace list (`services/{nodes,scheduler}.py`). A dotted name (`brev.server.reconciler.loop`,
`brev.server.deps.get_principal`) is a module, or a module and a name defined at its top level.
What is not a path of the tree is left alone: URLs and routes (`/api/v1/...`), paths under
`$BREV_HOME`, `~` or `..`, and anything with a space.
"""

from __future__ import annotations

import ast
import itertools
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DEVELOPMENT = ROOT / "docs" / "development.md"
# Where a path written in a doc may start from.
BASES = (ROOT, ROOT / "brev", ROOT / "brev" / "server")
# Packages installed under another name than their folder (setup.py's package_dir).
INSTALLED_AS = {"brev.providers": "providers", "brev.migrations": "migrations"}
FILE_SUFFIXES = (".py", ".md", ".csv", ".js", ".css", ".html", ".toml", ".yml", ".sh")
NOT_A_TREE_PATH = re.compile(r"[\s$~<>*]|^/|^\.\.|://")


def code_spans(markdown: str) -> list[str]:
    """The inline `code` of a Markdown text, outside fenced blocks."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    return re.findall(r"`([^`\n]+)`", prose)


def expand_braces(text: str) -> list[str]:
    parts = re.split(r"\{([^{}]*,[^{}]*)\}", text)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(pieces) for pieces in itertools.product(*choices)]


def is_tree_path(text: str) -> bool:
    """Written as a path (a '/' or a file's suffix), and not one outside the tree."""
    return not NOT_A_TREE_PATH.search(text) and ("/" in text or text.endswith(FILE_SUFFIXES))


def path_exists(text: str, folders: list[Path]) -> bool:
    """From a base, or a bare file name from a folder its table row names (`brev/agent/`: its
    `uplink.py`)."""
    bases = [*BASES, *folders] if "/" not in text else BASES
    return any((base / text).exists() for base in bases)


@cache
def top_level_names(module_file: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(module_file.read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def module_file(dotted: str) -> Path | None:
    """The file of module or package `dotted` (brev.x.y) in the tree, or None."""
    for installed, folder in INSTALLED_AS.items():
        if dotted == installed or dotted.startswith(installed + "."):
            dotted = folder + dotted.removeprefix(installed)
    relative = Path(*dotted.split("."))
    for candidate in (ROOT / relative.with_suffix(".py"), ROOT / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def dotted_exists(dotted: str) -> bool:
    """A module, or a module and one of its top-level names (`brev.server.deps.get_principal`,
    `brev.api.InstanceStatus`)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        found = module_file(".".join(parts[:cut]))
        if found is not None:
            rest = parts[cut:]
            return not rest or (len(rest) == 1 and rest[0] in top_level_names(found))
    return False


def missing_in_architecture(markdown: str) -> list[str]:
    missing = []
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.MULTILINE | re.DOTALL)
    for line in prose.splitlines():  # a table row is one line
        spans = code_spans(line)
        folders = [ROOT / s for s in spans if s.endswith("/") and (ROOT / s).is_dir()]
        for span in spans:
            if re.fullmatch(r"brev(\.[A-Za-z_]\w*)+", span):
                if not dotted_exists(span):
                    missing.append(span)
            elif is_tree_path(span):
                missing += [p for p in expand_braces(span) if not path_exists(p, folders)]
    return missing


def layout_paths(markdown: str) -> list[str]:
    """The first word of each entry of the `## Layout` block: `brev/cli/`, `action.yml`..."""
    block = re.search(r"^## Layout\n+```\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "docs/development.md has no ## Layout block"
    return [line.split()[0] for line in block.group(1).splitlines() if line and line[0] != " "]


def test_every_path_and_module_in_architecture_md_exists() -> None:
    missing = missing_in_architecture(ARCHITECTURE.read_text())
    assert missing == [], (
        f"docs/architecture.md names what is not in the tree: {missing}; "
        "name the module's or file's real path, or take it out"
    )


def test_every_path_in_development_md_layout_exists() -> None:
    paths = layout_paths(DEVELOPMENT.read_text())
    assert len(paths) >= 10, paths
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert missing == [], f"docs/development.md's layout names what is not in the tree: {missing}"


@pytest.mark.parametrize(
    ("markdown", "missing"),
    [
        ("`brev/server/ingest.py` and `providers/base.py`", []),
        ("`services/{fleet,scope}.py`, `reconciler/loop.py`, `brev/api/`", []),
        ("`brev.server.reconciler.loop`, `brev.server.deps.get_principal`", []),
        ("`brev.providers.registry`, `brev.migrations`, `brev.api.InstanceStatus`", []),
        ("`/api/v1/orgs/{org}/watch`, `$BREV_HOME/catalog/`, `brev create --ttl 4h`", []),
        ("`brev/server/gone.py`", ["brev/server/gone.py"]),
        ("`services/{fleet,gone}.py`", ["services/gone.py"]),
        (
            "`brev.server.gone`, `brev.server.deps.gone`",
            ["brev.server.gone", "brev.server.deps.gone"],
        ),
        ("```\n`brev/in/a/fence.py`\n```", []),
        ("| agent | `brev/agent/` | `uplink.py`, `watch.py` |", []),
        ("| agent | `brev/agent/` | `steps.py` |", ["steps.py"]),
    ],
)
def test_the_check_finds_what_is_missing(markdown: str, missing: list[str]) -> None:
    assert missing_in_architecture(markdown) == missing
