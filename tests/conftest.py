"""Fixtures shared by the suite: databases on both backends, an in-process plane, a real
`brev server` process, and people in separate orgs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from brev.client import BrevClient
from brev.server.app import create_app
from brev.server.main import prepare_database
from brev.server.reconciler.loop import Reconciler
from brev.server.settings import ServerSettings
from tests.databases import PostgresDatabases, SqliteDatabases
from tests.moto import MotoServer, start_moto
from tests.postgres import PostgresCluster, free_port, started_cluster

# The dashboard tests' `browser` and `page` fixtures.
pytest_plugins = ("tests.dashboard_browser",)

BREV = str(Path(sys.executable).parent / "brev")
BREV_ENV_VARS = (
    "BREV_HOME",
    "BREV_API_URL",
    "BREV_TOKEN",
    "BREV_ORG",
    "BREV_DATABASE_URL",
    "BREV_RECONCILE",
    "BREV_FAULT_INJECTION",
    "BREV_BOOT_PROBE",
)
# moto's and the fake GCP's machines have neither an agent nor an sshd, so the planes of the
# tests take the provider's "running" as reachable; tests/test_boot.py tests the real default.
BOOT_PROBE_OF_FAKES = {"boot_probe": "none"}


@pytest.fixture(autouse=True)
def _no_brev_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own login or database."""
    for name in BREV_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


# -- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    yield from started_cluster()


@pytest.fixture(scope="session")
def postgres_databases(postgres_cluster: PostgresCluster) -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_cluster)
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated database on each backend."""
    if request.param == "sqlite":
        databases: SqliteDatabases | PostgresDatabases = request.getfixturevalue("sqlite_databases")
    else:
        databases = request.getfixturevalue("postgres_databases")
    return databases.fresh()


# -- an in-process control plane ----------------------------------------------------------


@pytest.fixture
def brev_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "brev-home"
    monkeypatch.setenv("BREV_HOME", str(home))
    return home


@dataclass
class Plane:
    """The control plane's app, reached through the real typed client."""

    app: FastAPI
    settings: ServerSettings
    admin_token: str
    _clients: list[BrevClient] = field(default_factory=list)

    def client(self, token: str | None, org: str | None = None) -> BrevClient:
        client = BrevClient("http://testserver", token, org=org, http=TestClient(self.app))
        self._clients.append(client)
        return client

    def http(self, token: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return TestClient(self.app, headers=headers)

    @property
    def reconciler(self) -> Reconciler:
        reconciler: Reconciler = self.app.state.reconciler
        return reconciler

    def settle(self, max_passes: int = 30) -> None:
        """Run the reconciler until nothing is due (or `max_passes`)."""
        for _ in range(max_passes):
            if self.reconciler.run_once() == 0:
                return

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.app.state.engine.dispose()


def make_plane(database_url: str, brev_home: Path, **settings: Any) -> Plane:
    """A plane on a fresh database. No background reconciler: tests drive it with
    `plane.reconciler.run_once()`, and a zero poll interval makes every follow-up due at once.
    Its machines are running when the provider says so (BOOT_PROBE_OF_FAKES)."""
    values: dict[str, Any] = {"reconcile": False, "reconcile_poll": 0.0, **BOOT_PROBE_OF_FAKES}
    config = ServerSettings(home=brev_home, database_url=database_url, **{**values, **settings})
    created = prepare_database(config)
    assert created is not None
    return Plane(app=create_app(config), settings=config, admin_token=created.admin_token)


@pytest.fixture
def plane(database_url: str, brev_home: Path) -> Iterator[Plane]:
    plane = make_plane(database_url, brev_home)
    yield plane
    plane.close()


@pytest.fixture
def admin(plane: Plane) -> BrevClient:
    """The bootstrap admin, acting in the default org."""
    return plane.client(plane.admin_token, org="default")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's EC2 server, one per test worker; reset it with `.reset()` where state matters."""
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def aws_org(plane: Plane, admin: BrevClient, moto_server: MotoServer) -> BrevClient:
    """The admin, in an org whose AWS is a freshly reset moto."""
    moto_server.reset()
    admin.add_provider("aws", moto_server.config())
    return admin


# -- a real `brev server` process ---------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def admin_token(self) -> str:
        return (self.home / "admin-token").read_text().strip()

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's environment: this server's home, and a HOME of its own, so that what
        `brev` writes to ~/.ssh stays in the test."""
        env = {k: v for k, v in os.environ.items() if k not in BREV_ENV_VARS}
        user_home = self.home.parent / "user-home"
        user_home.mkdir(exist_ok=True)
        return {**env, "BREV_HOME": str(self.home), "HOME": str(user_home), **extra}


def start_server(
    home: Path,
    database_url: str | None = None,
    env_extra: dict[str, str] | None = None,
    port: int | None = None,
) -> LiveServer:
    port = port or free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home.parent / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in BREV_ENV_VARS}
    env["BREV_HOME"] = str(home)
    env["BREV_BOOT_PROBE"] = BOOT_PROBE_OF_FAKES["boot_probe"]
    env.update(env_extra or {})
    command = [BREV, "server", "--port", str(port)]
    if database_url:
        command += ["--database-url", database_url]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    server = LiveServer(url=f"http://127.0.0.1:{port}", home=home, log=log, process=process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"brev server exited {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"brev server did not answer /healthz in 30 s:\n{log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server for CLI and HTTP tests. Its reconciler is off: tests seed instance rows
    that stand for no real machine, which a reconciler would rightly mark as lost."""
    server = start_server(
        tmp_path_factory.mktemp("live") / "home", env_extra={"BREV_RECONCILE": "0"}
    )
    yield server
    stop_server(server)
