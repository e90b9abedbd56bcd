"""`brev nodes add` end to end: a real plane installs the real agent over real SSH on real
sshd boxes (2 GPUs, 1 GPU, none; the stub nvidia-smi replays the H200 capture), the agent
reports, instances run on the boxes with only their GPUs visible, and every bad input or
fault is one clear message that leaves nothing behind."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brev import api
from brev.client import BrevClient
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer, start_server, stop_server
from tests.node_plane import NODE_PLANE_ENV, client, env_of, server
from tests.postgres import free_port
from tests.real_plane import wait_for
from tests.sshbox import SshBox, agent_pids, kill_agents, make_user_key, ssh_box_factory

__all__ = ["client", "server", "ssh_box_factory"]  # fixtures, for pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    return make_user_key(tmp_path / "keys")


def add(
    server: LiveServer, box: SshBox, name: str, identity: Path | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    args = ["nodes", "add", name, f"{box.user}@127.0.0.1:{box.port}", "--host-key", box.host_key]
    if identity is not None:
        args += ["--identity", str(identity)]
    return brev(*args, *extra, env=env_of(server), timeout=120)


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 1, no traceback, nothing on stdout, the error as the last line of stderr (after
    any progress line such as "Installing the agent ..."); that line."""
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.splitlines()[-1]
    assert (
        last.startswith("error: ")
        and sum(line.startswith("error") for line in result.stderr.splitlines()) == 1
    )
    return last


@pytest.fixture
def boxes(
    ssh_box_factory: Callable[..., SshBox], key: tuple[Path, str]
) -> Iterator[Callable[..., SshBox]]:
    made: list[SshBox] = []

    def make(name: str, **options: object) -> SshBox:
        box = ssh_box_factory(name, authorized_keys=[key[1]], **options)
        made.append(box)
        return box

    yield make
    for box in made:
        kill_agents(box.node_home)


def test_add_three_boxes_schedule_and_see_only_own_gpus(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    two, one, none = boxes("two", gpus=2), boxes("one", gpus=1), boxes("none", gpus=0)
    for box, name in ((two, "big"), (one, "small"), (none, "cpu-box")):
        ok(add(server, box, name, key[0]))
    nodes = {n.name: n for n in client.nodes()}
    assert {n: len(v.gpus) for n, v in nodes.items()} == {"big": 2, "small": 1, "cpu-box": 0}
    assert all(n.status == api.NodeStatus.ONLINE for n in nodes.values())
    big = client.node("big")
    assert big.gpus[0].model == "H200" and big.driver_version and big.cuda_version
    assert big.host_keys == [two.host_key]
    # logged in as root, the install also set up sshd for users' certificates
    dropin = (two.root / "etc-ssh" / "sshd_config.d" / "brev.conf").read_text()
    assert f"AuthorizedPrincipalsFile {two.node_home / 'authorized_principals'}" in dropin
    assert any(e.action == "node.ssh_ca" and e.details["trusted"] for e in big.events)
    listing = ok(brev("nodes", "ls", env=env_of(server))).stdout
    assert "big" in listing and "2 x H200 (2 free)" in listing and "no GPU" in listing
    # the agent's token is in a 0600 file, never on a command line
    token_file = two.node_home / "agent.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert token.startswith("brev_")
    # The token itself, not its prefix: this host's process table is shared with the other
    # tests' processes (PostgreSQL's test databases are named brev_test_N).
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert token not in ps

    created = ok(
        brev("create", "h200:2", "--name", "train", "--timeout", "60s", env=env_of(server))
    )
    assert "running on node big" in created.stderr
    assert client.instance("train").node == "big"
    visible = subprocess.run(
        two.ssh_argv(
            key[0], f"{two.node_home}/bin/brev-enter train 'echo $CUDA_VISIBLE_DEVICES; pwd'"
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert visible == ["0,1", str(two.node_home / "instances" / "train")]

    ok(brev("create", "h200", "--name", "solo", "--timeout", "60s", env=env_of(server)))
    assert client.instance("solo").node == "small"
    full = brev("create", "h200", "--name", "extra", env=env_of(server))
    assert "no capacity" in one_line_error(full)

    ok(
        brev(
            "create",
            "cpu",
            "--name",
            "cpu-job",
            "--node",
            "cpu-box",
            "--timeout",
            "60s",
            env=env_of(server),
        )
    )
    hidden = subprocess.run(
        none.ssh_argv(
            key[0], f"{none.node_home}/bin/brev-enter", "cpu-job", 'echo "[$CUDA_VISIBLE_DEVICES]"'
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    assert hidden == "[]"

    # deleting gives the GPUs back and the agent removes the directory
    ok(brev("delete", "train", "-y", env=env_of(server)))
    wait_for(
        server, "workdir removed", lambda: not (two.node_home / "instances" / "train").exists()
    )
    assert all(g.instance is None for g in client.node("big").gpus)


def test_gpu_appearing_later_is_picked_up(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    box = boxes("grow", gpus=1)
    ok(add(server, box, "grow", key[0]))
    assert len(client.node("grow").gpus) == 1
    box.set_gpu_count(2)  # a second card (the stub now replays the 2-GPU capture)
    wait_for(server, "second GPU reported", lambda: len(client.node("grow").gpus) == 2)


def test_offline_node_makes_instances_unhealthy_and_keeps_gpus(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    box = boxes("flaky", gpus=2)
    ok(add(server, box, "flaky", key[0]))
    ok(brev("create", "h200:2", "--name", "job", "--timeout", "60s", env=env_of(server)))
    kill_agents(box.node_home)  # the box loses power, as far as the plane can tell
    wait_for(
        server,
        "unhealthy",
        lambda: client.instance("job").health == api.Health.UNHEALTHY,
        timeout=30,
    )
    wait_for(server, "offline", lambda: client.node("flaky").status == api.NodeStatus.OFFLINE)
    assert [g.instance for g in client.node("flaky").gpus] == ["job", "job"]


def test_rm_refuses_with_instances_then_the_agent_uninstalls_itself(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    box = boxes("gone", gpus=1)
    ok(add(server, box, "gone", key[0]))
    ok(brev("create", "h200", "--name", "held", "--timeout", "60s", env=env_of(server)))
    refused = one_line_error(brev("nodes", "rm", "gone", env=env_of(server)))
    assert "hosts 1 instance(s) (held)" in refused and "--force" in refused
    ok(brev("nodes", "rm", "gone", "--force", env=env_of(server)))
    wait_for(
        server,
        "agent uninstalled",
        lambda: not box.node_home.exists() and not agent_pids(box.node_home),
        timeout=30,
    )
    assert client.nodes() == []


def test_certificate_login_through_the_planes_ca(
    server: LiveServer, client: BrevClient, ssh_box_factory: Callable[..., SshBox]
) -> None:
    """No key given: the plane logs in with a certificate from its own CA."""
    box = ssh_box_factory("ca", trusted_ca=client.ssh_ca().public_key, gpus=0)
    try:
        ok(add(server, box, "trusting", None))
        assert client.node("trusting").status == api.NodeStatus.ONLINE
    finally:
        kill_agents(box.node_home)


def test_bad_inputs_are_one_line_and_leave_nothing(
    server: LiveServer,
    client: BrevClient,
    boxes: Callable[..., SshBox],
    key: tuple[Path, str],
    tmp_path: Path,
) -> None:
    box = boxes("good", gpus=1)
    env = env_of(server)
    # wrong port
    closed = free_port()
    wrong_port = brev(
        "nodes",
        "add",
        "x",
        f"root@127.0.0.1:{closed}",
        "--host-key",
        box.host_key,
        "--identity",
        str(key[0]),
        env=env,
    )
    assert "cannot reach 127.0.0.1" in failed(wrong_port)
    # a host name that does not resolve
    nowhere = failed(
        brev("nodes", "add", "x", "root@no-such-host.invalid", "--host-key", box.host_key, env=env)
    )
    assert "cannot reach no-such-host.invalid:22" in nowhere
    # a key the box refuses
    stranger, _ = make_user_key(tmp_path / "stranger")
    refused = failed(add(server, box, "x", stranger))
    assert "refused the key" in refused
    # a changed host key: refused, with how to re-pin
    box.regenerate_host_key()
    changed = failed(
        brev(
            "nodes",
            "add",
            "x",
            f"root@127.0.0.1:{box.port}",
            "--host-key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOv7ZkJ8/BCuNNxnxT3mmmcbSLz0pBxfq8sK1O1nT7TY",
            "--identity",
            str(key[0]),
            env=env,
        )
    )
    assert "changed" in changed and "--host-key" in changed
    # first contact without a pinned key, no terminal: the fingerprint and how to pin it
    unpinned = failed(
        brev("nodes", "add", "x", f"root@127.0.0.1:{box.port}", "--identity", str(key[0]), env=env)
    )
    assert "--host-key SHA256:" in unpinned
    # malformed destination
    assert "user@host[:port]" in failed(brev("nodes", "add", "x", "127.0.0.1", env=env))
    assert client.nodes() == []


def test_box_without_python_is_refused(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    for kind in ("missing", "old"):
        box = boxes(f"py-{kind}", gpus=0, python=kind)
        message = failed(add(server, box, f"py-{kind}", key[0]))
        assert "no Python 3.11 or newer" in message
        assert not (box.node_home / "venv").exists()
    assert client.nodes() == []


def test_agent_that_cannot_reach_the_plane_is_rolled_back(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    """Half-way: installed and started, but the box cannot reach the plane's URL."""
    box = boxes("lost", gpus=1)
    unreachable = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    message = failed(add(server, box, "lost", key[0], "--plane-url", unreachable))
    assert f"did not reach the plane at {unreachable}" in message
    assert "rolled back" in message
    assert time.monotonic() - started < 60
    assert not box.node_home.exists() and not agent_pids(box.node_home)
    assert client.nodes() == []
    ok(add(server, box, "lost", key[0]))  # the name was not left taken


def test_a_box_that_is_already_a_node_is_refused_and_left_alone(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    """Another org (or a typo) adding a box that is a node already: nothing on it changes."""
    box = boxes("taken", gpus=1)
    ok(add(server, box, "first", key[0]))
    client.create_org("other")
    other = env_of(server, org="other")
    args = ["nodes", "add", "second", f"root@127.0.0.1:{box.port}", "--host-key", box.host_key]
    refused = failed(brev(*args, "--identity", str(key[0]), env=other, timeout=120))
    assert "already installed" in refused
    token = (box.node_home / "agent.token").read_text()
    wait_for(server, "still reporting", lambda: client.node("first").status == "online")
    assert (box.node_home / "agent.token").read_text() == token
    with BrevClient(server.url, server.admin_token, org="other") as theirs:
        assert theirs.nodes() == []


def test_a_bad_plane_url_is_refused_before_anything_is_written(
    server: LiveServer, client: BrevClient, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    box = boxes("url", gpus=0)
    message = failed(add(server, box, "url", key[0], "--plane-url", "plane:8080"))
    assert "plane_url" in message
    assert not (box.node_home / "agent.token").exists()


@pytest.fixture
def quiet_server(tmp_path: Path) -> Iterator[LiveServer]:
    """Node agents report every 30 s here: whatever reaches a node sooner came through its
    long-poll for assignments."""
    env = {**NODE_PLANE_ENV, "BREV_NODE_REPORT_INTERVAL": "30"}
    server = start_server(tmp_path / "quiet-home", env_extra=env)
    yield server
    stop_server(server)


def test_changes_reach_the_node_at_once_not_at_the_next_report(
    quiet_server: LiveServer, boxes: Callable[..., SshBox], key: tuple[Path, str]
) -> None:
    box = boxes("quick", gpus=2)
    ok(add(quiet_server, box, "quick", key[0]))
    env, instances = env_of(quiet_server), box.node_home / "instances"
    started = time.monotonic()
    created = ok(brev("create", "h200", "--name", "fast", "--timeout", "20s", env=env))
    took = time.monotonic() - started  # the whole command, Python's start-up included
    assert "running on node quick" in created.stderr and took < 5, took
    assert (instances / "fast" / ".brev" / "env").is_file()

    def within(seconds: float, what: str, probe: Callable[[], bool]) -> None:
        wait_for(quiet_server, what, probe, timeout=seconds)

    def gpus_of(name: str) -> str | None:
        try:
            text = (instances / name / ".brev" / "env").read_text()
        except FileNotFoundError:
            return None
        return next(line for line in text.splitlines() if "CUDA_VISIBLE_DEVICES=" in line)

    with BrevClient(quiet_server.url, quiet_server.admin_token, org="default") as client:
        posted = time.monotonic()
        client.create_instance(api.InstanceCreate(name="api", gpu="h200", node="quick"))
        within(2, "running", lambda: client.instance("api").status == "running")
        assert time.monotonic() - posted < 2 and gpus_of("api") == "export CUDA_VISIBLE_DEVICES=1"
        principal = f"brev-i-{client.instance('fast').id}"
        principals = box.node_home / "authorized_principals"
        assert principal in principals.read_text()
        client.stop_instance("fast")
        # The agent writes the env file, then the principals file: wait for both.
        within(
            2,
            "GPUs hidden and its login closed",
            lambda: (
                gpus_of("fast") == "export CUDA_VISIBLE_DEVICES=''"
                and principal not in principals.read_text()
            ),
        )
        client.start_instance("fast")
        within(2, "running again", lambda: client.instance("fast").status == "running")
        assert gpus_of("fast") == "export CUDA_VISIBLE_DEVICES=0"
        client.delete_instance("fast")
        within(2, "directory removed", lambda: not (instances / "fast").exists())
        assert client.node("quick").status == api.NodeStatus.ONLINE
