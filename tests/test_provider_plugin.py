"""A provider from a distribution of its own, found only through the `brev.providers` entry
point: installed beside a real plane (not a line of brev changed), its credentials added,
its offers searched, and an instance created, stopped, started and deleted through it.

The CLI here does not have the plug-in installed (a user's laptop need not): `brev provider
add toy` learns the provider's config keys from the plane."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brev import api
from brev.client import BrevClient
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer, start_server
from tests.real_plane import CLI_TIMEOUT_SECONDS, FAST_RECONCILER, stop_plane, wait_for

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).parent / "plugins" / "brev-toy-provider"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in pip-installed into a folder of its own, as into a plane's site-packages."""
    target = tmp_path_factory.mktemp("toy-site")
    # Built from a copy: a build in place would leave build/ and egg-info in the checkout.
    source = tmp_path_factory.mktemp("toy-build") / "brev-toy-provider"
    shutil.copytree(PLUGIN, source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=source.parent,
        timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def toy_plane(tmp_path_factory: pytest.TempPathFactory, plugin_site: Path) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("toy-plane") / "home"
    server = start_server(home, env_extra={**FAST_RECONCILER, "PYTHONPATH": str(plugin_site)})
    yield server
    stop_plane(server)


@pytest.fixture
def cli(toy_plane: LiveServer, tmp_path: Path) -> Iterator[tuple[BrevClient, dict[str, str]]]:
    with BrevClient(toy_plane.url, toy_plane.admin_token, org="default") as admin:
        env = toy_plane.env(
            BREV_API_URL=toy_plane.url,
            BREV_TOKEN=toy_plane.admin_token,
            BREV_ORG="default",
            BREV_HOME=str(tmp_path / "cli-home"),
        )
        yield admin, env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return brev(*args, env=env, timeout=CLI_TIMEOUT_SECONDS)


def test_the_plane_describes_the_plugin(cli: tuple[BrevClient, dict[str, str]]) -> None:
    _, env = cli
    known = json.loads(ok(run(env, "provider", "ls", "--available", "--json")).stdout)
    toy = next(p for p in known if p["name"] == "toy")
    assert toy["display_name"] == "Toy Cloud"
    keys = {k["name"]: k for k in toy["config_keys"]}
    assert keys["password"]["secret"] and keys["password"]["required"]
    assert keys["state_dir"]["option"] == "--state-dir"
    assert {"aws", "gcp", "toy"} <= {p["name"] for p in known}


def test_wrong_or_missing_keys_are_one_line_and_keep_the_secret(
    cli: tuple[BrevClient, dict[str, str]], tmp_path: Path
) -> None:
    _, env = cli
    missing = one_line_error(run(env, "provider", "add", "toy", "--password", "hunter2"))
    assert "--state-dir" in missing and "TOY_STATE_DIR" in missing, missing
    wrong = run(env, "provider", "add", "toy", "--state-dir", str(tmp_path), "--password", "s3cr3t")
    line = one_line_error(wrong)
    assert "Toy Cloud refused the password" in line and "s3cr3t" not in wrong.stderr
    unknown = one_line_error(run(env, "provider", "add", "toy", "--colour", "red"))
    assert "--colour" in unknown and "--state-dir" in unknown, unknown


def test_create_stop_start_delete_through_the_plugin(
    cli: tuple[BrevClient, dict[str, str]], toy_plane: LiveServer, tmp_path: Path
) -> None:
    admin, env = cli
    machines = tmp_path / "toy-machines"
    # The secret from the environment, as CI passes one; the folder as an option.
    with_secret = {**env, "TOY_PASSWORD": "hunter2"}
    ok(run(with_secret, "provider", "add", "toy", "--state-dir", str(machines)))
    configured = json.loads(ok(run(env, "provider", "ls", "--json")).stdout)
    assert [c["provider"] for c in configured] == ["toy"]
    assert "hunter2" not in json.dumps(configured)

    offers = json.loads(ok(run(env, "search", "l4", "--provider", "toy", "--json")).stdout)
    assert [o["instance_type"] for o in offers] == ["toy.l4"]

    created = json.loads(ok(run(env, "create", "l4", "--provider", "toy", "--json")).stdout)
    name = created["name"]
    assert (created["status"], created["provider"], created["instance_type"]) == (
        "running",
        "toy",
        "toy.l4",
    )
    (machine_file,) = machines.glob("*.json")
    machine = json.loads(machine_file.read_text())
    assert machine["tags"]["brev-instance-id"] == created["id"]

    ok(run(env, "stop", name))
    wait_for(
        toy_plane,
        f"{name} stopped",
        lambda: admin.instance(name).status == api.InstanceStatus.STOPPED,
    )
    assert json.loads(machine_file.read_text())["state"] == "stopped"
    ok(run(env, "start", name))
    wait_for(
        toy_plane,
        f"{name} running",
        lambda: admin.instance(name).status == api.InstanceStatus.RUNNING,
    )
    ok(run(env, "delete", name, "-y"))
    wait_for(toy_plane, f"{name} deleted", lambda: all(i.name != name for i in admin.instances()))
    assert json.loads(machine_file.read_text())["state"] == "terminated"
    assert "Traceback" not in toy_plane.log.read_text()


def test_an_unknown_provider_or_an_option_without_a_value_is_one_line(
    cli: tuple[BrevClient, dict[str, str]],
) -> None:
    _, env = cli
    unknown = one_line_error(run(env, "provider", "add", "azure"))
    assert "unknown provider 'azure'" in unknown and "toy" in unknown, unknown
    bare = one_line_error(run(env, "provider", "add", "toy", "--state-dir"))
    assert "--state-dir needs a value" in bare, bare
