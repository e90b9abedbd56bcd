"""SSH access end to end: the plane's CA signs users' certificates, `brev refresh` writes
ssh_config and pinned host keys, and the real `ssh`/`scp` get into instances on real sshd boxes
(registered nodes whose agent lists each instance's principal with a forced `brev-enter`).
Each refusal the issue names is tested: an expired certificate, one for another machine, a
changed host key, a person removed from the org."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brev.client import BrevClient
from brev.server.secrets import Secrets
from brev.ssh import ca
from brev.ssh import config as ssh_config
from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.node_plane import client, env_of, poll, server
from tests.sshbox import SshBox, kill_agents, make_user_key, ssh_box_factory

__all__ = ["client", "server", "ssh_box_factory"]  # fixtures
pytestmark = pytest.mark.slow


@pytest.fixture
def node_box(
    server: LiveServer,
    client: BrevClient,
    ssh_box_factory: Callable[..., SshBox],
    tmp_path: Path,
) -> Iterator[SshBox]:
    """A 2-GPU box set up as `brev register` sets one up (trusting the CA, principals from
    the agent), added as node `gpu-box`, with instance `train` (both GPUs) running on it."""
    key, public = make_user_key(tmp_path / "admin-key")
    box = ssh_box_factory(
        "node",
        gpus=2,
        authorized_keys=[public],
        trusted_ca=client.ssh_ca().public_key,
        principals_file=True,
    )
    try:
        add = ["nodes", "add", "gpu-box", f"root@127.0.0.1:{box.port}", "--host-key", box.host_key]
        ok(brev(*add, "--identity", str(key), env=env_of(server), timeout=120))
        ok(brev("create", "h200:2", "--name", "train", "--timeout", "60s", env=env_of(server)))
        yield box
    finally:
        kill_agents(box.node_home)


def user_home(server: LiveServer) -> Path:
    return Path(env_of(server)["HOME"])


def test_refresh_exec_ssh_scp_through_the_generated_config(
    server: LiveServer, node_box: SshBox, tmp_path: Path
) -> None:
    env = env_of(server)
    ok(brev("refresh", env=env))
    ok(brev("refresh", env=env))  # idempotent: one Include line, same entries
    user_config = (user_home(server) / ".ssh" / "config").read_text()
    include = f"Include {server.home / 'ssh_config'}"
    assert user_config.count(include) == 1
    generated = (server.home / "ssh_config").read_text()
    assert "Host train" in generated and "StrictHostKeyChecking yes" in generated
    assert "Host node-gpu-box" in generated
    assert (server.home / "keys" / "id_ed25519").stat().st_mode & 0o777 == 0o600

    # brev exec: the instance's GPUs, its directory, its exit code
    seen = ok(brev("exec", "train", "--", "echo $CUDA_VISIBLE_DEVICES; pwd", env=env)).stdout
    assert seen.split() == ["0,1", str(node_box.node_home / "instances" / "train")]
    assert brev("exec", "train", "--", "exit 7", env=env).returncode == 7

    # plain ssh through ~/.ssh/config (ssh reads the passwd home, so name the file)
    plain = subprocess.run(
        ["ssh", "-F", str(user_home(server) / ".ssh" / "config"), "train", "echo $BREV_INSTANCE"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "train"

    # brev cp, both ways, recursively
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "weights.bin").write_bytes(b"x" * 100_000)
    ok(brev("cp", str(data), "train:data", env=env))
    landed = node_box.node_home / "instances" / "train" / "data" / "sub" / "weights.bin"
    assert landed.read_bytes() == b"x" * 100_000
    back = tmp_path / "back"
    ok(brev("cp", "train:data", str(back), env=env))
    assert (back / "sub" / "weights.bin").stat().st_size == 100_000


def test_opt_out_leaves_ssh_config_alone(server: LiveServer, node_box: SshBox) -> None:
    (user_home(server) / ".ssh" / "config").unlink()  # `brev create` wrote it
    ok(brev("refresh", "--no-ssh-config", env=env_of(server)))
    ok(brev("refresh", env={**env_of(server), "BREV_SSH_CONFIG": "0"}))
    assert not (user_home(server) / ".ssh" / "config").exists()
    assert (server.home / "ssh_config").exists()


def test_stale_entries_go_and_stopped_instances_are_closed(
    server: LiveServer, client: BrevClient, node_box: SshBox
) -> None:
    env = env_of(server)
    ok(brev("create", "cpu", "--name", "scratch", "--node", "gpu-box", "--timeout", "60s", env=env))
    ok(brev("refresh", env=env))
    assert "Host scratch" in (server.home / "ssh_config").read_text()
    ok(brev("delete", "scratch", "-y", env=env))
    ok(brev("refresh", env=env))
    assert "Host scratch" not in (server.home / "ssh_config").read_text()
    # stopped: the node's agent drops its principal, so even a valid certificate gets nothing
    client.stop_instance("train")
    principals = node_box.node_home / "authorized_principals"
    poll(lambda: "brev-enter" not in principals.read_text(), "principal dropped")
    # the fast path (cached "running") fails in ssh, then the plane says why
    stopped = brev("exec", "train", "--", "true", env=env)
    assert (
        stopped.returncode == 1 and "is stopped: start it with `brev start train`" in stopped.stderr
    )
    started = ok(brev("exec", "train", "--start", "--", "echo up", env=env, timeout=120))
    assert started.stdout.strip() == "up"


def _ca_key(server: LiveServer) -> str:
    """The plane's CA private key, as the plane itself unseals it (for forging test certs)."""
    with closing(sqlite3.connect(server.home / "brev.db")) as db:
        sealed = db.execute("SELECT ssh_ca_key FROM plane").fetchone()[0]
    return str(Secrets.for_home(server.home).open(sealed)["private_key"])


def _ssh_with_cert(server: LiveServer, box: SshBox, cert: str, command: str) -> int:
    p = ssh_config.Paths(server.home)
    forged = p.keys / "forged-cert.pub"
    forged.write_text(cert + "\n")
    argv = [
        "ssh", "-F", "/dev/null", "-p", str(box.port), "-i", str(p.key),
        "-o", f"CertificateFile={forged}", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={box.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        f"{box.user}@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def test_expired_and_foreign_certificates_are_refused(
    server: LiveServer, client: BrevClient, node_box: SshBox
) -> None:
    ok(brev("refresh", env=env_of(server)))
    p = ssh_config.Paths(server.home)
    public = (p.keys / "id_ed25519.pub").read_text().strip()
    instance_id = client.instance("train").id
    principal = f"brev-i-{instance_id}"
    ca_key = _ca_key(server)

    def cert(principals: list[str], now: datetime) -> str:
        return ca.sign_user_certificate(
            ca_key, public, key_id="test", principals=principals,
            valid_for=timedelta(minutes=10), now=now,
        )  # fmt: skip

    now = datetime.now(UTC)
    assert _ssh_with_cert(server, node_box, cert([principal], now), "true") == 0
    expired = cert([principal], now - timedelta(hours=1))
    assert _ssh_with_cert(server, node_box, expired, "true") == 255
    another_machine = cert(["brev-i-" + "0" * 32], now)
    assert _ssh_with_cert(server, node_box, another_machine, "true") == 255
    as_the_user = cert([node_box.user], now)  # principals file: the login name is not enough
    assert _ssh_with_cert(server, node_box, as_the_user, "true") == 255


def test_changed_host_key_is_refused(server: LiveServer, node_box: SshBox) -> None:
    env = env_of(server)
    ok(brev("exec", "train", "--", "true", env=env))
    node_box.regenerate_host_key()
    refused = brev("exec", "train", "--", "true", env=env)
    assert refused.returncode == 255
    assert (
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in refused.stderr or "Host key" in refused.stderr
    )


def test_removed_user_gets_no_new_certificate(
    server: LiveServer, client: BrevClient, node_box: SshBox, tmp_path: Path
) -> None:
    added = client.add_member("alice@example.com")
    assert added.login_token is not None
    alice = server.env(
        BREV_API_URL=server.url, BREV_TOKEN=added.login_token, BREV_ORG="default",
        BREV_HOME=str(tmp_path / "alice"), HOME=str(tmp_path / "alice-home"),
    )  # fmt: skip
    ok(brev("exec", "train", "--", "true", env=alice))
    client.remove_member("alice@example.com")
    # her token no longer acts in the org, so no certificate: refused at once
    refused = brev("refresh", env=alice)
    assert refused.returncode == 1 and "not found" in refused.stderr
    certificate = (tmp_path / "alice" / "keys" / "certs" / "train-cert.pub").read_text()
    assert certificate  # the one she has runs out within BREV_SSH_CERTIFICATE_HOURS


def test_exec_on_an_unknown_instance_is_one_line(server: LiveServer) -> None:
    result = brev("exec", "nope", "--", "true", env=env_of(server))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no instance or node 'nope'")
