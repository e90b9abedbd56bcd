"""`brev register`, run on the box itself: the node joins without SSH from outside, its agent
runs here, sshd is told to trust the plane's CA (root) or the person is told how (not root)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from brev import api
from brev.cli.commands import register as register_cli
from brev.client import BrevClient
from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.node_plane import server
from tests.postgres import free_port
from tests.real_plane import wait_for
from tests.sshbox import kill_agents

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"
__all__ = ["server"]  # the fixture, for pytest
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo"),
]


@pytest.fixture
def node_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "node"
    yield home
    kill_agents(home)


def box_env(server: LiveServer, node_home: Path, ssh_dir: Path) -> dict[str, str]:
    return server.env(
        BREV_API_URL=server.url,
        BREV_TOKEN=server.admin_token,
        BREV_ORG="default",
        BREV_NODE_HOME=str(node_home),
        BREV_SSHD_CONFIG_DIR=str(ssh_dir),
        BREV_NODE_INSTALL_WAIT="15",
        PATH=f"{STUB}:{os.environ['PATH']}",
    )


def test_register_installs_here_and_trusts_the_ca(
    server: LiveServer, node_home: Path, tmp_path: Path
) -> None:
    ssh_dir = tmp_path / "etc-ssh"
    env = box_env(server, node_home, ssh_dir)
    result = ok(brev("register", "--name", "my-spark", "--json", env=env, timeout=120))
    node = api.NodeDetail.model_validate_json(result.stdout)
    assert node.status == api.NodeStatus.ONLINE and len(node.gpus) == 2
    assert node.ssh_host and node.ssh_port == 22  # where users will log in; nobody did to install
    with BrevClient(server.url, server.admin_token, org="default") as client:
        ca_key = client.ssh_ca().public_key
        assert (ssh_dir / "brev_user_ca.pub").read_text().strip() == ca_key
        dropin = (ssh_dir / "sshd_config.d" / "brev.conf").read_text()
        assert f"TrustedUserCAKeys {ssh_dir / 'brev_user_ca.pub'}" in dropin
        assert f"AuthorizedPrincipalsFile {node_home / 'authorized_principals'}" in dropin
        # the node works like one added over SSH
        ok(brev("create", "h200", "--name", "here", "--timeout", "60s", env=env))
        assert (node_home / "instances" / "here" / ".brev" / "env").exists()
        ok(brev("nodes", "rm", "my-spark", "--force", env=env))
        wait_for(server, "the agent uninstalled", lambda: not node_home.exists(), timeout=30)
        assert client.nodes() == []


def test_register_rolls_back_when_the_agent_cannot_reach_the_plane(
    server: LiveServer, node_home: Path, tmp_path: Path
) -> None:
    env = box_env(server, node_home, tmp_path / "etc-ssh")
    unreachable = f"http://127.0.0.1:{free_port()}"
    result = brev("register", "--name", "lost", "--plane-url", unreachable, env=env, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "did not reach the plane" in result.stderr.splitlines()[-1]
    assert not node_home.exists()
    with BrevClient(server.url, server.admin_token, org="default") as client:
        assert client.nodes() == []


def test_register_without_python_says_so(
    server: LiveServer, node_home: Path, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3", "python3.11", "python3.12", "python3.13"):
        (bin_dir / name).write_text("#!/bin/sh\necho 'Python 3.6.9'\nexit 1\n")
        (bin_dir / name).chmod(0o755)
    env = box_env(server, node_home, tmp_path / "etc-ssh")
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    result = brev("register", "--name", "old", env=env)
    assert result.returncode == 1
    assert "no Python 3.11 or newer" in result.stderr and "Traceback" not in result.stderr


def test_not_root_is_told_plainly_what_to_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("BREV_SSHD_CONFIG_DIR", str(tmp_path))
    register_cli._trust_ca("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB brev-ca", tmp_path / "node")
    said = capsys.readouterr().err
    assert "Not root: sshd was not told to trust the plane's SSH CA" in said
    assert "TrustedUserCAKeys" in said and "AuthorizedPrincipalsFile" in said
    assert not any(tmp_path.iterdir())


def test_register_refuses_a_bad_plane_url_first(
    server: LiveServer, node_home: Path, tmp_path: Path
) -> None:
    env = box_env(server, node_home, tmp_path / "etc-ssh")
    result = brev("register", "--name", "x", "--plane-url", "plane:8080", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--plane-url: 'plane:8080' is not http(s)://HOST[:PORT]" in result.stderr
    with BrevClient(server.url, server.admin_token, org="default") as client:
        assert client.nodes() == []
