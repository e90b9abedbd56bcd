"""`brev --help`, `brev CMD --help`, `brev` alone: printed from a copy of what the full CLI
prints, instead of building typer's command tree (all of brev.cli imported) to format it.

The copies are in help/: one page per command and index.txt, which says for which command line
a page is printed, on which stream, with which exit status. scripts/render_help.py writes them
by running the real CLI; tests/test_cli_help.py fails when they differ from what it prints.
"""

from __future__ import annotations

import os
import sys

PAGES = os.path.join(os.path.dirname(__file__), "help")
INDEX = "index.txt"
# click formats help to min(terminal columns, 80) - 2; the pages are rendered at 80 columns, so
# a narrower terminal (or COLUMNS) gets the full CLI, which wraps to its width.
RENDERED_COLUMNS = 80
# What a command's name is made of: anything else on the command line is not a help request
# that the index can hold (and keeps a lookup from reading outside help/).
_COMMAND_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def serve(argv: list[str]) -> int | None:
    """Print the help page for this command line and return the exit status; None when it is
    not one the index has (the full CLI then answers)."""
    if not all(_is_word(arg) for arg in argv):
        return None
    entry = _lookup(" ".join(argv))
    if entry is None or _columns() < RENDERED_COLUMNS:
        return None
    page, stream, status = entry
    try:
        with open(os.path.join(PAGES, page), encoding="utf-8") as source:
            text = source.read()
    except OSError:
        return None
    (sys.stdout if stream == "stdout" else sys.stderr).write(text)
    return status


def _is_word(arg: str) -> bool:
    return arg in ("--help", "-h") or (bool(arg) and set(arg) <= _COMMAND_CHARS)


def _lookup(command_line: str) -> tuple[str, str, int] | None:
    """(page, stream, exit status) of this command line: index.txt's lines are
    `ARGS<TAB>PAGE<TAB>STREAM<TAB>STATUS`."""
    try:
        with open(os.path.join(PAGES, INDEX), encoding="utf-8") as index:
            for line in index:
                args, page, stream, status = line.rstrip("\n").split("\t")
                if args == command_line and os.path.basename(page) == page:
                    return page, stream, int(status)
    except (OSError, ValueError):
        return None
    return None


def _columns() -> int:
    """The terminal's columns as click sees them (shutil.get_terminal_size, without importing
    shutil): $COLUMNS, else stdout's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80
