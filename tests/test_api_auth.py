"""401 paths and token storage: only a hash, expiry, revocation, agent tokens."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select

from brev.client import BrevClient, Forbidden, Unauthenticated
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import ApiToken, utcnow
from tests.conftest import Plane


def _token_row(plane: Plane, name: str) -> ApiToken:
    engine = make_engine(plane.settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            return session.scalars(select(ApiToken).where(ApiToken.name == name)).one()
    finally:
        engine.dispose()


def _update_token(plane: Plane, name: str, **values: object) -> None:
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            token = session.scalars(select(ApiToken).where(ApiToken.name == name)).one()
            for key, value in values.items():
                setattr(token, key, value)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing token"),
        ("Bearer brev_not-a-real-token", "invalid token"),
        ("Basic YWRtaW46YWRtaW4=", "missing token"),
        ("Bearer ", "missing token"),
    ],
)
def test_requests_without_a_valid_token_get_401_with_a_json_error(
    plane: Plane, header: str | None, reason: str
) -> None:
    http = plane.http()
    headers = {"Authorization": header} if header else {}
    response = http.get("/api/v1/orgs/default/instances", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["error"]["code"] == "unauthenticated"
    assert reason in body["error"]["message"]


def test_only_a_hash_of_a_token_is_stored(plane: Plane, admin: BrevClient) -> None:
    created = admin.create_token("ci")
    row = _token_row(plane, "ci")
    assert row.secret_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert created.secret.startswith("brev_") and len(created.secret) > 40
    assert row.prefix == created.secret[:12] == created.token.prefix
    stored = " ".join(str(v) for v in vars(row).values())
    assert created.secret not in stored


def test_an_expired_token_gets_401(plane: Plane, admin: BrevClient) -> None:
    created = admin.create_token("short", expires_in_seconds=3600)
    ci = plane.client(created.secret, org="default")
    assert ci.instances() == []
    _update_token(plane, "short", expires_at=utcnow() - timedelta(seconds=1))
    with pytest.raises(Unauthenticated, match="token 'short' expired"):
        ci.instances()


def test_a_revoked_token_gets_401_at_once(plane: Plane, admin: BrevClient) -> None:
    created = admin.create_token("ci")
    ci = plane.client(created.secret, org="default")
    assert ci.whoami().token_name == "ci"
    revoked = admin.revoke_token("ci")
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthenticated, match="token 'ci' was revoked"):
        ci.whoami()
    # The name is free again, and the new token is a different secret.
    again = admin.create_token("ci")
    assert again.secret != created.secret
    assert plane.client(again.secret, org="default").whoami().token_name == "ci"


def test_last_used_is_recorded(plane: Plane, admin: BrevClient) -> None:
    created = admin.create_token("ci")
    assert _token_row(plane, "ci").last_used_at is None
    plane.client(created.secret, org="default").instances()
    used = _token_row(plane, "ci").last_used_at
    assert used is not None and utcnow() - used < timedelta(minutes=1)


def test_an_agent_token_cannot_use_the_user_api(plane: Plane, admin: BrevClient) -> None:
    created = admin.create_token("agent-ish")
    _update_token(plane, "agent-ish", kind="agent")
    with pytest.raises(Forbidden, match="agent token"):
        plane.client(created.secret, org="default").instances()
