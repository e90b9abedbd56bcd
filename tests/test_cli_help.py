"""`brev --help` and `brev CMD --help` from the shipped copy (brev.cli.fast.help): the copy is
what the real CLI prints for every command, and the console script prints it byte for byte as
the full CLI (BREV_FAST=0) would, on a pipe and on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from brev.cli.fast import help as fast_help
from scripts import render_help
from tests.cli_imports import imports_typer
from tests.conftest import BREV

SLOW = {"BREV_FAST": "0"}


def run(argv: list[str], **env: str) -> tuple[str, str, int]:
    """`brev ARGV` on pipes: stdout, stderr, exit status."""
    done = subprocess.run(
        [BREV, *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return done.stdout, done.stderr, done.returncode


def test_the_shipped_pages_are_what_the_cli_prints() -> None:
    rendered, shipped = render_help.render(), render_help.shipped()
    stale = sorted(n for n in rendered.keys() | shipped.keys() if rendered.get(n) != shipped.get(n))
    assert not stale, f"help pages differ from the CLI's: {stale}; run {render_help.REGENERATE}"
    # every command has its page, and the index names only pages that exist
    assert len(rendered) - 1 == len(render_help.command_paths())
    for line in rendered[fast_help.INDEX].splitlines():
        assert line.split("\t")[1] in rendered, line


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["-h"],
        ["search", "--help"],
        ["org"],
        ["org", "create", "-h"],
        ["run", "--help"],
        ["exec", "--help"],
    ],
)
def test_the_console_script_prints_the_page_as_the_full_cli(argv: list[str]) -> None:
    fast = run(argv)
    assert fast == run(argv, **SLOW)
    assert fast[2] == (2 if argv in ([], ["org"]) else 0)
    assert not imports_typer(argv)


def test_what_the_index_lacks_goes_to_the_full_cli() -> None:
    for argv in (["search", "a100", "--help"], ["no-such-command", "--help"], ["LS", "-h"]):
        assert run(argv) == run(argv, **SLOW)
        assert imports_typer(argv), argv


def test_a_narrow_terminal_gets_help_wrapped_to_its_width() -> None:
    narrow = run(["search", "--help"], COLUMNS="60")
    assert narrow == run(["search", "--help"], COLUMNS="60", **SLOW)
    assert narrow != run(["search", "--help"])
    assert max(len(line) for line in narrow[0].splitlines()) <= 58


def on_terminal(argv: list[str], columns: int, **env: str) -> bytes:
    """What `brev ARGV` writes to a terminal `columns` wide."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    process = subprocess.Popen(
        [BREV, *argv],
        env={**environment, **env},
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    return output


def test_a_terminal_gets_the_same_help() -> None:
    for argv in (["--help"], ["search", "--help"]):
        fast = on_terminal(argv, 120)
        assert fast == on_terminal(argv, 120, **SLOW)
        page = Path(fast_help.PAGES, render_help.page_name(argv[:-1])).read_text()
        assert fast == page.replace("\n", "\r\n").encode()
