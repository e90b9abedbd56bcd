"""brev open: VS Code or Cursor on an instance, through their Remote-SSH extension.

The editor runs its own `ssh ALIAS`, which reads ~/.ssh/config only: the `Include` line that
`brev refresh` puts there is what makes the alias known to it. The folder opened is the one a
session on the instance starts in (an instance on a node: its working directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Annotated

import typer

from brev.cli import panels, ssh_tunnels
from brev.cli.exit_codes import SSH_FAILED
from brev.cli.options import Start, Wait
from brev.cli.output import note
from brev.errors import BrevError
from brev.ssh import config as ssh_config

EDITORS = {
    "code": (
        "VS Code",
        "install VS Code (https://code.visualstudio.com) and, on macOS, run `Shell Command: "
        "Install 'code' command in PATH` from its command palette",
    ),
    "cursor": (
        "Cursor",
        "install Cursor (https://cursor.com) and run `Shell Command: Install 'cursor' "
        "command` from its command palette",
    ),
}


def _included(p: ssh_config.Paths) -> bool:
    """Whether ~/.ssh/config includes our ssh_config (the line `brev refresh` writes)."""
    line = f"Include {p.config}"
    try:
        text = ssh_config.user_config().read_text()
    except OSError:
        return False
    return any(row.strip() == line for row in text.splitlines())


def _make_alias_visible(p: ssh_config.Paths, label: str, program: str, alias: str) -> None:
    if _included(p):
        return
    if os.environ.get("BREV_SSH_CONFIG", "1") == "0":
        raise BrevError(
            f"{label} cannot find the host '{alias}': BREV_SSH_CONFIG=0 keeps brev out of "
            f"~/.ssh/config, and {program}'s ssh reads only that file. Add the line "
            f"`Include {p.config}` at its top, or unset BREV_SSH_CONFIG and run `brev refresh`"
        )
    # The fast path of `prepare` does not refresh, so a config refreshed with
    # --no-ssh-config lacks the line: the editor needs it.
    with ssh_config.locked(p):
        ssh_config.add_include(p)
    note(f"Added `Include {p.config}` to {ssh_config.user_config()} so that {label} finds it.")


def open_editor(
    name: Annotated[str, typer.Argument(help="instance (or node-NAME)")],
    editor: Annotated[
        str, typer.Option("--editor", "-e", help="code (VS Code) or cursor")
    ] = "code",
    start: Start = False,
    wait: Wait = "5m",
) -> None:
    """Open VS Code (or Cursor) on an instance over Remote-SSH, in its working directory."""
    if editor not in EDITORS:
        raise BrevError(f"--editor {editor!r}: expected one of {', '.join(EDITORS)}")
    label, how_to_install = EDITORS[editor]
    program = shutil.which(editor)
    if program is None:
        raise BrevError(f"{label}'s `{editor}` command is not on PATH: {how_to_install}")
    p = ssh_config.paths()
    alias, code, out, err = ssh_tunnels.capture(name, "pwd", start=start, wait=wait)
    if code != 0:
        reason = ssh_tunnels.last_line(err, f"exit {code}")
        if code == SSH_FAILED:
            sys.stderr.write(f"error: {ssh_tunnels.ssh_failure_line(name, code, reason)}\n")
        else:
            sys.stderr.write(f"error: could not read {name}'s working directory ({reason})\n")
        raise typer.Exit(code)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines or not lines[-1].startswith("/"):
        raise BrevError(f"could not read {name}'s working directory (`pwd` printed nothing)")
    workdir = lines[-1]
    _make_alias_visible(p, label, editor, alias)
    note(f"Opening {name}:{workdir} in {label} (Remote-SSH) ...")
    sys.stdout.flush()
    try:
        status = subprocess.call([program, "--remote", f"ssh-remote+{alias}", workdir])
    except OSError as error:
        raise BrevError(f"could not run {program}: {error.strerror or error}") from None
    if status != 0:
        note(f"{editor} exited {status}")
    raise typer.Exit(status)


def register(app: typer.Typer) -> None:
    app.command("open", rich_help_panel=panels.ACCESS)(open_editor)
