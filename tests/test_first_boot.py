"""A cloud instance's first boot: the user data the plane gives the provider trusts the
plane's SSH CA for that instance's principal alone and installs the agent from the plane's own
wheel, with a token derived per instance (the same user data on every retry of a create).

The end-to-end test takes the user data moto received, runs it on this machine (sshd's files
and the agent's folder redirected into the test), and sees the agent report: telemetry, and
the host keys pinned from that first authenticated report."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from brev import api
from brev.client import BrevClient
from brev.server.secrets import Secrets
from brev.server.services.first_boot import boot_token
from tests.conftest import LiveServer, Plane, start_server, stop_server
from tests.moto import MotoServer, live_machines
from tests.postgres import free_port
from tests.real_plane import FAST_RECONCILER, wait_for
from tests.sshbox import kill_agents

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"


def test_boot_tokens_are_stable_per_instance_and_secret_keyed() -> None:
    secrets = Secrets(b"Hk1qzXW8vvZ2o9gZJ6a3tY2v2tJtq0nJfS3d8c2xq9Y=")
    other = Secrets(b"2Xq5lV8dGkz0dNw4v7Zb1QJf6Wn9TgYcRr3UeA0sLmE=")
    assert boot_token(secrets, "a" * 32) == boot_token(secrets, "a" * 32)
    assert boot_token(secrets, "a" * 32) != boot_token(secrets, "b" * 32)
    assert boot_token(secrets, "a" * 32) != boot_token(other, "a" * 32)
    assert boot_token(secrets, "a" * 32).startswith("brev_")


def test_the_wheel_endpoint_serves_agents_only(plane: Plane, admin: BrevClient) -> None:
    assert plane.http(plane.admin_token).get("/api/v1/agent/wheel").status_code == 403
    assert plane.http().get("/api/v1/agent/wheel").status_code == 401


@pytest.fixture
def cloud(tmp_path: Path, moto_server: MotoServer) -> Iterator[LiveServer]:
    moto_server.reset()
    port = free_port()
    env = {**FAST_RECONCILER, "BREV_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    server = start_server(tmp_path / "home", env_extra=env, port=port)
    yield server
    stop_server(server)


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_first_boot_trusts_the_ca_and_the_agent_reports(
    cloud: LiveServer, moto_server: MotoServer, tmp_path: Path
) -> None:
    with BrevClient(cloud.url, cloud.admin_token, org="default") as client:
        client.add_provider("aws", moto_server.config())
        body = api.InstanceCreate(name="boot", gpu="a100:8", providers=["aws"], region="us-east-1")
        instance = client.create_instance(body)
        wait_for(cloud, "running", lambda: client.instance("boot").status == "running")
        [machine] = live_machines(moto_server)
        ec2 = boto3.client("ec2", region_name="us-east-1", **_aws(moto_server))
        attribute = ec2.describe_instance_attribute(
            InstanceId=machine["InstanceId"], Attribute="userData"
        )
        user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
        ca_key = client.ssh_ca().public_key
        assert ca_key in user_data
        assert f"brev-i-{instance.id}" in user_data
        assert "python3 -m brev.node.boot" in user_data
        assert "Authorization: Bearer $(cat" in user_data  # the token never on a command line

        ssh_dir, agent_home = tmp_path / "etc-ssh", tmp_path / "opt-brev-agent"
        env = {
            **os.environ,
            "BREV_SSHD_CONFIG_DIR": str(ssh_dir),
            "BREV_NODE_HOME": str(agent_home),
            "PATH": f"{STUB}:{os.environ['PATH']}",
        }
        try:
            boot = subprocess.run(
                ["bash", "-s"], input=user_data, env=env, capture_output=True, text=True,
                timeout=120,
            )  # fmt: skip
            assert boot.returncode == 0, boot.stderr
            assert "agent could not be installed" not in boot.stderr, boot.stderr
            assert (ssh_dir / "brev_principals").read_text().strip() == f"brev-i-{instance.id}"
            assert (ssh_dir / "brev_user_ca.pub").read_text().strip() == ca_key
            conf = (ssh_dir / "sshd_config.d" / "brev.conf").read_text()
            assert "TrustedUserCAKeys" in conf and "AuthorizedPrincipalsFile" in conf
            assert (agent_home / "agent.token").stat().st_mode & 0o777 == 0o600
            wait_for(cloud, "the agent's report", lambda: client.instance("boot").last_heartbeat_at)
            shown = client.instance("boot")
            assert len(shown.telemetry.get("gpus", [])) == 2, shown.telemetry  # the replayed H200
            assert shown.health == api.Health.HEALTHY
            # the host keys of the first report are pinned, and `brev refresh` writes them
            access = client.ssh_certificate(_user_key(tmp_path))
            [target] = [t for t in access.targets if t.alias == "boot"]
            # pinned as `TYPE BASE64`, the comment dropped
            expected = sorted(" ".join(Path(p).read_text().split()[:2]) for p in _host_key_files())
            assert sorted(target.host_keys) == expected
            # a second run (GCP runs startup scripts at every boot) changes nothing
            again = subprocess.run(
                ["bash", "-s"], input=user_data, env=env, capture_output=True, text=True,
                timeout=60,
            )  # fmt: skip
            assert again.returncode == 0
        finally:
            kill_agents(agent_home)


def _aws(moto: MotoServer) -> dict[str, str]:
    config = moto.config()
    return {
        "endpoint_url": config["endpoint_url"],
        "aws_access_key_id": config["access_key_id"],
        "aws_secret_access_key": config["secret_access_key"],
    }


def _user_key(tmp_path: Path) -> str:
    from brev.ssh import ca

    return ca.public_key_line(ca.new_private_key())


def _host_key_files() -> list[str]:
    return [str(p) for p in Path("/etc/ssh").glob("ssh_host_*_key.pub")]


def test_without_a_public_url_no_agent_is_installed(plane: Plane, admin: BrevClient) -> None:
    from brev.server.db.engine import transaction
    from brev.server.db.models import Instance
    from brev.server.services import first_boot
    from tests.seed import add_instances

    add_instances(plane.settings.database_url, "default", "admin@localhost", ["x"])
    with transaction(plane.app.state.sessions) as session:
        row = session.query(Instance).one()
        script = first_boot.script(session, row, plane.app.state.secrets, None)
    assert "TrustedUserCAKeys" in script and "no BREV_PUBLIC_URL" in script
    assert "brev.node.boot" not in script
