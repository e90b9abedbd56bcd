"""A real plane for the tests of registered nodes and SSH access (test_nodes_e2e, test_access,
test_register, test_tunnels, test_jupyter, test_open): node agents report every second, an
install waits 20 s for the first report, and the reconciler runs (it marks silent instances
unhealthy; there is no cloud for it to call). Import the fixtures into a test module by name."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brev.client import BrevClient
from tests.conftest import LiveServer, start_server, stop_server

NODE_PLANE_ENV = {
    "BREV_RECONCILE": "1",
    "BREV_RECONCILE_INTERVAL": "0.2",
    "BREV_NODE_REPORT_INTERVAL": "1",
    "BREV_NODE_INSTALL_WAIT": "20",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path / "home", env_extra=NODE_PLANE_ENV)
    yield server
    stop_server(server)


@pytest.fixture
def client(server: LiveServer) -> Iterator[BrevClient]:
    """The bootstrap admin, in org `default`."""
    with BrevClient(server.url, server.admin_token, org="default") as client:
        yield client


def env_of(server: LiveServer, token: str | None = None, org: str = "default") -> dict[str, str]:
    """The environment of a `brev` command against this plane (a HOME of its own included)."""
    return server.env(BREV_API_URL=server.url, BREV_TOKEN=token or server.admin_token, BREV_ORG=org)


def poll(probe: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Until `probe()` is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.1)
