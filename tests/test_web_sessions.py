"""The dashboard's sign-in: session cookies, CSRF, login links, sign-out, and the page's headers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from brev.server.db.models import LoginLink, utcnow
from brev.server.deps import SESSION_COOKIE
from tests.conftest import Plane

API = "/api/v1"


def _signed_in(plane: Plane, token: str | None = None) -> tuple[TestClient, str]:
    """A browser-like client holding a session cookie, and the page's CSRF token."""
    browser = plane.http()
    answer = browser.post(f"{API}/web/sessions", json={"token": token or plane.admin_token})
    assert answer.status_code == 201, answer.text
    return browser, answer.json()["csrf_token"]


def _set_cookie(response: object) -> str:
    headers = response.headers  # type: ignore[attr-defined]
    (cookie,) = [v for k, v in headers.multi_items() if k == "set-cookie"]
    return str(cookie)


def test_a_pasted_token_starts_a_session_in_an_httponly_strict_cookie(plane: Plane) -> None:
    browser = plane.http()
    answer = browser.post(f"{API}/web/sessions", json={"token": plane.admin_token})
    assert answer.status_code == 201
    body = answer.json()
    assert body["email"] == "admin@localhost"
    assert body["csrf_token"]
    assert plane.admin_token not in answer.text  # the token is not echoed back
    cookie = _set_cookie(answer)
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    assert plane.admin_token not in cookie  # the cookie is a session of its own, not the token

    assert browser.get(f"{API}/whoami").json()["user"]["email"] == "admin@localhost"
    assert browser.get(f"{API}/web/sessions/current").json()["csrf_token"] == body["csrf_token"]


def test_the_cookie_is_secure_behind_https(plane: Plane) -> None:
    browser = TestClient(plane.app, base_url="https://testserver")
    answer = browser.post(f"{API}/web/sessions", json={"token": plane.admin_token})
    assert answer.status_code == 201
    assert "secure" in {part.strip().lower() for part in _set_cookie(answer).split(";")}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"token": "brev_wrong"}, 401, "invalid token"),
        ({"login_code": "nope"}, 401, "used already or expired"),
        ({}, 422, "exactly one of 'token' and 'login_code'"),
        ({"token": "a", "login_code": "b"}, 422, "exactly one"),
    ],
)
def test_a_bad_sign_in_says_why_and_sets_no_cookie(
    plane: Plane, body: dict[str, str], status: int, message: str
) -> None:
    answer = plane.http().post(f"{API}/web/sessions", json=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert "set-cookie" not in answer.headers


def test_without_a_session_the_page_is_told_to_sign_in(plane: Plane) -> None:
    browser = plane.http()
    assert browser.get(f"{API}/web/sessions/current").status_code == 401
    browser.cookies.set(SESSION_COOKIE, "forged")
    answer = browser.get(f"{API}/whoami")
    assert answer.status_code == 401
    assert "sign in again" in answer.json()["error"]["message"]


def test_writes_by_cookie_need_the_csrf_token(plane: Plane) -> None:
    browser, csrf = _signed_in(plane)
    refused = browser.post(f"{API}/orgs", json={"name": "vision"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "csrf_failed"
    wrong = browser.post(f"{API}/orgs", json={"name": "vision"}, headers={"X-CSRF-Token": "x"})
    assert wrong.status_code == 403
    made = browser.post(f"{API}/orgs", json={"name": "vision"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    assert browser.get(f"{API}/orgs/vision").status_code == 200  # reads need no token


def test_a_cross_origin_form_post_is_refused(plane: Plane) -> None:
    """What a page elsewhere can make a signed-in browser send: the cookie (were it not for
    SameSite), a form's content type, an Origin of its own, and no X-CSRF-Token."""
    browser, _ = _signed_in(plane)
    forged = browser.post(
        f"{API}/orgs",
        content="name=evil",
        headers={
            "Origin": "http://evil.example",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "csrf_failed"
    # Nor can such a page sign the browser in as someone else (login CSRF).
    login = plane.http().post(
        f"{API}/web/sessions",
        content=f'{{"token": "{plane.admin_token}"}}',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert login.status_code == 422  # a JSON body only comes with a JSON content type
    assert "set-cookie" not in login.headers


def test_a_bearer_token_needs_no_csrf_token(plane: Plane) -> None:
    answer = plane.http(plane.admin_token).post(f"{API}/orgs", json={"name": "robots"})
    assert answer.status_code == 201


def test_sign_out_ends_the_session_on_the_plane(plane: Plane) -> None:
    browser, csrf = _signed_in(plane)
    secret = browser.cookies[SESSION_COOKIE]
    assert browser.delete(f"{API}/web/sessions/current").status_code == 403  # no CSRF token
    out = browser.delete(f"{API}/web/sessions/current", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert f"{SESSION_COOKIE}=" in _set_cookie(out)  # the browser is told to drop it
    # Whoever kept a copy of the cookie gets nothing more from it.
    stolen = plane.http()
    stolen.cookies.set(SESSION_COOKIE, secret)
    answer = stolen.get(f"{API}/whoami")
    assert answer.status_code == 401
    assert "signed out" in answer.json()["error"]["message"]


def test_revoking_the_token_ends_its_sessions(plane: Plane) -> None:
    admin = plane.http(plane.admin_token)
    created = admin.post(f"{API}/orgs/default/tokens", json={"name": "laptop"})
    assert created.status_code == 201
    browser, _ = _signed_in(plane, created.json()["secret"])
    assert browser.get(f"{API}/whoami").status_code == 200
    assert admin.delete(f"{API}/orgs/default/tokens/laptop").status_code == 200
    answer = browser.get(f"{API}/whoami")
    assert answer.status_code == 401
    assert "revoked" in answer.json()["error"]["message"]


def test_a_login_link_works_once(plane: Plane) -> None:
    link = plane.http(plane.admin_token).post(f"{API}/web/login-links")
    assert link.status_code == 201
    body = link.json()
    assert body["url"] == f"http://testserver/#login={body['code']}"  # in the fragment
    browser = plane.http()
    first = browser.post(f"{API}/web/sessions", json={"login_code": body["code"]})
    assert first.status_code == 201
    assert browser.get(f"{API}/whoami").json()["user"]["email"] == "admin@localhost"
    again = plane.http().post(f"{API}/web/sessions", json={"login_code": body["code"]})
    assert again.status_code == 401
    assert "brev dashboard" in again.json()["error"]["message"]


def test_a_login_link_expires(plane: Plane) -> None:
    code = plane.http(plane.admin_token).post(f"{API}/web/login-links").json()["code"]
    with plane.app.state.sessions() as session, session.begin():
        session.execute(update(LoginLink).values(expires_at=utcnow() - timedelta(seconds=1)))
    late = plane.http().post(f"{API}/web/sessions", json={"login_code": code})
    assert late.status_code == 401
    assert "expired" in late.json()["error"]["message"]


def test_a_run_token_cannot_sign_in_nor_make_links(plane: Plane) -> None:
    admin = plane.http(plane.admin_token)
    run = admin.post(f"{API}/orgs/default/tokens", json={"name": "ci", "scope": "run"})
    secret = run.json()["secret"]
    refused = plane.http().post(f"{API}/web/sessions", json={"token": secret})
    assert refused.status_code == 403
    assert "scope 'run'" in refused.json()["error"]["message"]
    assert plane.http(secret).post(f"{API}/web/login-links").status_code == 403


def test_a_session_of_one_org_sees_nothing_of_another(plane: Plane) -> None:
    admin = plane.http(plane.admin_token)
    assert admin.post(f"{API}/orgs", json={"name": "secret-lab"}).status_code == 201
    added = admin.post(f"{API}/orgs/default/members", json={"email": "ann@example.com"})
    browser, _ = _signed_in(plane, added.json()["login_token"])
    for path in ("", "/instances", "/nodes", "/members", "/events"):
        answer = browser.get(f"{API}/orgs/secret-lab{path}")
        assert answer.status_code == 404, path
    assert [org["name"] for org in browser.get(f"{API}/orgs").json()] == ["default"]


def test_the_page_and_its_files_carry_a_strict_content_security_policy(plane: Plane) -> None:
    browser = plane.http()
    page = browser.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    script = browser.get("/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    again = browser.get("/static/app.js", headers={"If-None-Match": script.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize(
    "path", ["__init__.py", "../app.py", "..%2Fapp.py", "%2e%2e/deps.py", "nope.js", "pages"]
)
def test_only_the_pages_files_are_served(plane: Plane, path: str) -> None:
    assert plane.http().get(f"/static/{path}").status_code == 404
