"""Render the help pages that `brev --help` and `brev CMD --help` print without loading typer.

    .venv/bin/python scripts/render_help.py [--check]

Runs the real CLI (brev.cli.main, what BREV_FAST=0 runs) in this process for every command:
`brev CMD --help` and `brev CMD -h`, and `brev CMD` alone for a group, with stdout and stderr
captured as a pipe 80 columns wide sees them, and writes what it printed to
brev/cli/fast/help/: one page per command and index.txt, the command lines that print a page
(brev.cli.fast.help reads both). Run it after changing a command, an option or a help text;
tests/test_cli_help.py fails until then. --check writes nothing and exits 1 when the shipped
pages differ from what the CLI prints.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brev.cli.fast import help as fast_help

REGENERATE = "scripts/render_help.py"
HELP_FLAGS = ("--help", "-h")
LOGIN_VARIABLES = ("BREV_HOME", "BREV_API_URL", "BREV_TOKEN", "BREV_ORG")


@dataclass(frozen=True)
class Printed:
    """What one command line printed, and its exit status."""

    stdout: str
    stderr: str
    status: int


@dataclass(frozen=True)
class Command:
    path: list[str]  # the words after `brev`
    group: bool  # a group prints its help when given no subcommand
    short_flags: frozenset[str]  # its options' one-letter names: -h may be one of them


def command_paths() -> list[Command]:
    """Every command of the tree, the root first."""
    import typer.main
    from typer.core import TyperGroup

    from brev.cli.main import app

    def walk(command: Any, path: list[str]) -> Iterator[Command]:
        flags = frozenset(
            name for param in command.params for name in param.opts if not name.startswith("--")
        )
        yield Command(path, isinstance(command, TyperGroup), flags)
        if isinstance(command, TyperGroup):
            for name, child in command.commands.items():
                yield from walk(child, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def run_cli(argv: list[str]) -> Printed:
    """`brev ARGV` through the full CLI's entry point, in this process."""
    from brev.cli.main import main

    stdout, stderr = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(stdout, encoding="utf-8", newline="")
    err = io.TextIOWrapper(stderr, encoding="utf-8", newline="")
    status = 0
    saved_argv, saved_columns = sys.argv, os.environ.get("COLUMNS")
    sys.argv = ["brev", *argv]
    os.environ["COLUMNS"] = str(fast_help.RENDERED_COLUMNS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code
                status = 0 if code is None else code if isinstance(code, int) else 1
            out.flush()
            err.flush()
    finally:
        sys.argv = saved_argv
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    return Printed(stdout.getvalue().decode(), stderr.getvalue().decode(), status)


def page_name(path: list[str]) -> str:
    return ".".join(["brev", *path]) + ".txt"


def render() -> dict[str, str]:
    """The files of brev/cli/fast/help/ as the CLI prints them now: name -> content."""
    saved = {name: os.environ.pop(name, None) for name in LOGIN_VARIABLES}
    try:
        with tempfile.TemporaryDirectory() as home:
            # Only help is asked for; should a command run all the same, it finds no login.
            os.environ["BREV_HOME"] = home
            return _render()
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _render() -> dict[str, str]:
    files: dict[str, str] = {}
    index: list[str] = []
    for command in command_paths():
        path = command.path
        page = run_cli([*path, "--help"])
        if page.status != 0 or page.stderr or not page.stdout:
            raise SystemExit(f"brev {' '.join([*path, '--help'])} printed no help: {page}")
        name = page_name(path)
        files[name] = page.stdout
        for flag in HELP_FLAGS:
            if flag in command.short_flags:
                continue  # not help here: it would run the command
            if flag == "--help" or run_cli([*path, flag]) == page:
                index.append(f"{' '.join([*path, flag])}\t{name}\tstdout\t0")
        if not command.group:
            continue  # alone, a command runs
        alone = run_cli(path)
        if alone == Printed("", page.stdout, alone.status) and alone.status != 0:
            # no subcommand: the group's help, on stderr, as a usage error
            index.append(f"{' '.join(path)}\t{name}\tstderr\t{alone.status}")
    files[fast_help.INDEX] = "".join(f"{line}\n" for line in index)
    return files


def shipped() -> dict[str, str]:
    pages = sorted(Path(fast_help.PAGES).glob("*.txt"))
    return {page.name: page.read_text(encoding="utf-8") for page in pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    check = parser.parse_args().check
    rendered, current = render(), shipped()
    if check:
        stale = sorted(
            name
            for name in rendered.keys() | current.keys()
            if rendered.get(name) != current.get(name)
        )
        if stale:
            sys.exit(f"stale help pages ({', '.join(stale)}): run {REGENERATE}")
        return
    directory = Path(fast_help.PAGES)
    directory.mkdir(parents=True, exist_ok=True)
    for name in current.keys() - rendered.keys():
        (directory / name).unlink()
    for name, content in rendered.items():
        if current.get(name) != content:
            (directory / name).write_text(content, encoding="utf-8")
    print(f"{len(rendered) - 1} help pages in {directory}")


if __name__ == "__main__":
    main()
