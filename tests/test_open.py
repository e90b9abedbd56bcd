"""brev open: the editor's command line (a stand-in `code`/`cursor` on PATH records it), the
alias reachable through ~/.ssh/config the way the editor's own ssh reaches it, and the plain
errors: no editor installed, brev kept out of ~/.ssh/config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer
from tests.node_plane import client, env_of, server
from tests.sshbox import SshBox
from tests.test_access import node_box, ssh_box_factory, user_home

__all__ = ["client", "node_box", "server", "ssh_box_factory"]
pytestmark = pytest.mark.slow

SYSTEM_PATH = "/usr/bin:/bin"  # ssh is there; VS Code and Cursor are not


def _stub(bin_dir: Path, name: str, exit_code: int = 0) -> Path:
    """An editor that writes its arguments, one a line, to bin_dir/NAME.argv."""
    bin_dir.mkdir(exist_ok=True)
    record = bin_dir / f"{name}.argv"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit {exit_code}\n')
    script.chmod(0o755)
    return record


def test_open_runs_the_editor_on_the_alias(
    server: LiveServer, node_box: SshBox, tmp_path: Path
) -> None:
    if shutil.which("code", path=SYSTEM_PATH) or shutil.which("cursor", path=SYSTEM_PATH):
        pytest.skip("this machine has a real code/cursor in /usr/bin")
    bin_dir = tmp_path / "editors"
    env = {**env_of(server), "PATH": f"{bin_dir}:{SYSTEM_PATH}"}
    workdir = str(node_box.node_home / "instances" / "train")

    # no editor at all
    missing = one_line_error(brev("open", "train", env=env))
    assert missing.startswith("error: VS Code's `code` command is not on PATH: install VS Code")
    missing = one_line_error(brev("open", "train", "--editor", "cursor", env=env))
    assert missing.startswith("error: Cursor's `cursor` command is not on PATH")
    wrong = one_line_error(brev("open", "train", "--editor", "vim", env=env))
    assert wrong == "error: --editor 'vim': expected one of code, cursor"

    # VS Code: its Remote-SSH URI on the alias, the instance's working directory
    record = _stub(bin_dir, "code")
    opened = ok(brev("open", "train", env=env))
    assert record.read_text().splitlines() == ["--remote", "ssh-remote+train", workdir]
    assert opened.stdout == ""
    # the editor's ssh reads ~/.ssh/config only: the alias must resolve through it
    ssh_user_config = user_home(server) / ".ssh" / "config"
    assert f"Include {server.home / 'ssh_config'}" in ssh_user_config.read_text()
    via_user_config = subprocess.run(
        ["ssh", "-F", str(ssh_user_config), "train", "pwd"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert via_user_config.stdout.strip() == workdir, via_user_config.stderr

    # Cursor, and its exit code passed on
    record = _stub(bin_dir, "cursor", exit_code=3)
    assert brev("open", "train", "--editor", "cursor", env=env).returncode == 3
    assert record.read_text().splitlines() == ["--remote", "ssh-remote+train", workdir]

    # the Include line gone (cached state, no refresh): put back, the editor needs it
    ssh_user_config.unlink()
    back = ok(brev("open", "train", env=env))
    assert "Added `Include" in back.stderr
    assert f"Include {server.home / 'ssh_config'}" in ssh_user_config.read_text()

    # ... unless the user keeps brev out of ~/.ssh/config: then say the editor cannot find it
    ssh_user_config.unlink()
    kept_out = one_line_error(brev("open", "train", env={**env, "BREV_SSH_CONFIG": "0"}))
    assert kept_out.startswith(
        "error: VS Code cannot find the host 'train': BREV_SSH_CONFIG=0 keeps brev out of "
        "~/.ssh/config"
    )
    assert not ssh_user_config.exists()

    unknown = one_line_error(brev("open", "nope", env=env))
    assert unknown.startswith("error: no instance or node 'nope'")
