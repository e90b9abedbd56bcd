"""A real `brev server` process with its reconciler on and short timings, moto as its AWS, and
bounded waits whose failures show the server's log: helpers for the end-to-end tests of
`test_crash.py` and `test_cli_lifecycle.py`."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from brev.client import BrevClient
from brev.providers.base import TAG_INSTANCE_ID, TAG_MANAGED
from tests.conftest import LiveServer, start_server, stop_server
from tests.moto import MotoServer, live_machines

T = TypeVar("T")

# How long any wait for the plane may take before the test fails (a pass is 0.2 s; moto
# answers in milliseconds, so a minute means something is stuck).
WAIT_SECONDS = 60.0
FAST_RECONCILER = {
    "BREV_RECONCILE": "1",
    "BREV_RECONCILE_INTERVAL": "0.2",
    "BREV_RECONCILE_POLL": "0.2",
}
# How long a claim on a row lasts. A server renews the claims of its running steps, so this
# only bounds how soon a restarted server takes over the rows of one that was killed: 6 s for
# servers a crash test kills, 15 s for the others.
LEASE_SECONDS = 15
TAKEOVER_LEASE_SECONDS = 6
# How long a `brev` command against the plane may take (`brev create` waits for a machine).
CLI_TIMEOUT_SECONDS = 120


def start_plane(
    home: Path, *, fault: str | None = None, lease: float = LEASE_SECONDS
) -> LiveServer:
    """`brev server` on `home` (SQLite at `home/brev.db`), reconciling every 0.2 s."""
    env = {**FAST_RECONCILER, "BREV_RECONCILE_LEASE": str(lease)}
    if fault:
        env["BREV_FAULT_INJECTION"] = fault
    return start_server(home, env_extra=env)


def stop_plane(server: LiveServer) -> None:
    if server.process.poll() is None:
        stop_server(server)


def log_tail(server: LiveServer, lines: int = 40) -> str:
    try:
        text = server.log.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log at {server.log}: {exc.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def wait_for(
    server: LiveServer,
    what: str,
    probe: Callable[[], T | None],
    timeout: float = WAIT_SECONDS,
    *,
    may_die: bool = False,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something other than None (or False); that value.

    Fails, with the server log's tail (and `describe()`: what was seen last), after `timeout`
    seconds, or at once when the server died (unless `may_die`)."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if not may_die and server.process.poll() is not None:
            pytest.fail(
                f"brev server died (exit {server.process.returncode}) while waiting for {what}"
                f"\n--- server log ---\n{log_tail(server)}"
            )
        if time.monotonic() > deadline:
            seen = describe() if describe else repr(last)
            pytest.fail(
                f"waited {timeout:.0f} s for {what}; last seen: {seen}"
                f"\n--- server log ---\n{log_tail(server)}"
            )
        time.sleep(0.1)


def wait_until_dead(server: LiveServer, why: str, timeout: float = WAIT_SECONDS) -> int:
    """The server's exit status, once it has exited (it kills itself at an injected fault)."""

    def exit_status() -> int | None:
        return server.process.poll()

    return wait_for(server, f"the server to die {why}", exit_status, timeout, may_die=True)


def admin(server: LiveServer) -> BrevClient:
    """The bootstrap admin of `server`, in the default org."""
    return BrevClient(server.url, server.admin_token, org="default")


def instance_status(client: BrevClient, name: str) -> str | None:
    """The live instance's status, or None once `brev ls` no longer lists it."""
    found = [i for i in client.instances() if i.name == name]
    return found[0].status.value if found else None


# -- moto -------------------------------------------------------------------------------


def live_ids(moto: MotoServer, region: str = "us-east-1") -> list[str]:
    """The ids of moto's live machines (what an assertion should print, not whole records)."""
    return [m["InstanceId"] for m in live_machines(moto, region)]


def machines_of(moto: MotoServer, instance_id: str) -> list[dict[str, Any]]:
    """Live machines tagged with this instance's id."""
    return [m for m in live_machines(moto) if m["Tags"].get(TAG_INSTANCE_ID) == instance_id]


def the_machine_of(moto: MotoServer, instance_id: str) -> dict[str, Any]:
    """The one live machine tagged with this instance's id; fails on none or several."""
    found = machines_of(moto, instance_id)
    assert len(found) == 1, (
        f"expected one live machine for instance {instance_id}, moto has {len(found)}: "
        f"{[(m['InstanceId'], m['State']['Name']) for m in found]}"
    )
    return found[0]


def managed(machines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in machines if m["Tags"].get(TAG_MANAGED) == "true"]


# -- the database, read directly ----------------------------------------------------------


@contextmanager
def database(home: Path) -> Iterator[sqlite3.Connection]:
    """The server's SQLite database (`home/brev.db`), opened with sqlite3 (no ORM, no server)."""
    with closing(sqlite3.connect(home / "brev.db", timeout=30)) as connection:
        connection.row_factory = sqlite3.Row
        yield connection


def instance_row(home: Path, instance_id: str) -> dict[str, Any]:
    """The instance's row as the server last committed it (read with sqlite3, no ORM)."""
    with database(home) as connection:
        row = connection.execute("SELECT * FROM instances WHERE id = ?", (instance_id,)).fetchone()
    assert row is not None, f"no row for instance {instance_id}"
    return dict(row)


def live_rows(home: Path) -> list[dict[str, Any]]:
    """Every instance row not deleted."""
    with database(home) as connection:
        rows = connection.execute("SELECT * FROM instances WHERE deleted_at IS NULL").fetchall()
    return [dict(r) for r in rows]


def instance_count(home: Path, org: str | None = None) -> int:
    """Rows of every instance ever created (in `org`, else in all orgs), deleted ones too."""
    query = "SELECT count(*) FROM instances"
    params: tuple[str, ...] = ()
    if org is not None:
        query += " WHERE org_id = (SELECT id FROM orgs WHERE name = ?)"
        params = (org,)
    with database(home) as connection:
        count: int = connection.execute(query, params).fetchone()[0]
    return count


def events(home: Path, action: str) -> list[dict[str, Any]]:
    """The audit log's `action` events, oldest first, `details` parsed."""
    with database(home) as connection:
        rows = connection.execute(
            "SELECT * FROM events WHERE action = ? ORDER BY id", (action,)
        ).fetchall()
    return [{**dict(r), "details": json.loads(r["details"])} for r in rows]


def untracked(moto: MotoServer, home: Path) -> list[str]:
    """Live machines tagged brev-managed=true that no live row runs on: money spent for
    nothing. Empty when the plane and the cloud agree."""
    refs = {r["provider_ref"] for r in live_rows(home)}
    return [m["InstanceId"] for m in managed(live_machines(moto)) if m["InstanceId"] not in refs]


# -- the real `brev` CLI (tests/cli_runner.py runs it) -------------------------------------


def without_aws(env: dict[str, str]) -> dict[str, str]:
    """`env` less every AWS_* variable: the developer's own keys or profile never leak in."""
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}
