"""A write is committed before its response is sent: whoever hears 201 can read it at once.

Only a real server shows this: starlette's TestClient waits for the whole request, teardown
included, before returning the response.
"""

from __future__ import annotations

import sqlite3

import httpx

from tests.conftest import LiveServer


def test_a_created_org_is_in_the_database_when_the_201_arrives(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    database = sqlite3.connect(live_server.home / "brev.db")
    try:
        with httpx.Client(base_url=live_server.url, headers=headers) as http:
            for attempt in range(20):
                name = f"read-after-write-{attempt}"
                assert http.post("/api/v1/orgs", json={"name": name}).status_code == 201
                found = database.execute("SELECT count(*) FROM orgs WHERE name = ?", (name,))
                assert found.fetchone() == (1,), f"attempt {attempt}: not committed yet"
    finally:
        database.close()
