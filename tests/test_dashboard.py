"""The dashboard's sign-in and its security, in a real browser (Debian's Chromium through
Playwright) against a real `brev server`: a pasted token and a `brev dashboard` link both end
in an HttpOnly, SameSite=Strict cookie; sign-out ends the session on the plane; writes need
the page's CSRF token; names are text; one org's session sees nothing of another's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from brev import api
from brev.client import BrevClient
from tests.conftest import LiveServer, start_server, stop_server
from tests.dashboard_browser import screenshot, sign_in, signed_in_page
from tests.seed import add_instances

pytestmark = pytest.mark.slow

SCRIPT = "<script>window.pwned=1</script>"
IMAGE = "<img src=x onerror=window.pwned=2>"  # no '/': a name the instance page's URL can hold


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("dashboard") / "home")
    yield server
    stop_server(server)


def _member(plane: LiveServer, role: api.Role = api.Role.MEMBER) -> tuple[str, str]:
    """A new org with one new person in it: (org, that person's token)."""
    org = f"org-{uuid.uuid4().hex[:8]}"
    with BrevClient(plane.url, plane.admin_token) as admin:
        admin.create_org(org)
        added = admin.add_member(f"{org}@example.com", role=role, org=org)
    assert added.login_token is not None
    return org, added.login_token


def _session_cookie(page: Page) -> dict[str, object]:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "brev_session"]
    return dict(cookie)


def test_a_wrong_token_is_refused_with_the_servers_message(plane: LiveServer, page: Page) -> None:
    sign_in(page, plane.url, "brev_wrong")
    expect(page.get_by_role("alert")).to_have_text("invalid token")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#shell")).to_be_hidden()
    assert page.context.cookies() == []
    screenshot(page, "signin")


def test_a_pasted_token_becomes_an_httponly_strict_cookie_and_is_kept_nowhere_else(
    plane: LiveServer, page: Page
) -> None:
    token = plane.admin_token
    signed_in_page(page, plane.url, token)
    expect(page.locator("#who")).to_have_text("admin@localhost")
    cookie = _session_cookie(page)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http on loopback; Secure behind https
    assert cookie["value"] != token
    kept = page.evaluate(
        "() => [document.cookie, JSON.stringify(localStorage), JSON.stringify(sessionStorage),"
        " location.href, document.documentElement.outerHTML].join('\\n')"
    )
    assert token not in kept and "brev_session" not in kept
    # A reload stays signed in: the cookie, not page state.
    page.reload()
    expect(page.locator("#who")).to_have_text("admin@localhost")


def test_a_login_link_signs_in_once_and_leaves_the_address_bar(
    plane: LiveServer, page: Page
) -> None:
    with BrevClient(plane.url, plane.admin_token) as admin:
        link = admin.create_login_link()
    assert link.url.startswith(plane.url + "/#login=")
    page.goto(link.url)
    expect(page.locator("#who")).to_have_text("admin@localhost")
    assert "login=" not in page.url
    assert _session_cookie(page)["httpOnly"] is True

    # The same link in another browser: used, refused with the plane's words.
    other = page.context.browser
    assert other is not None
    context = other.new_context()
    try:
        again = context.new_page()
        again.goto(link.url)
        expect(again.get_by_role("alert")).to_contain_text("used already or expired")
        expect(again.locator("#signin")).to_be_visible()
    finally:
        context.close()


def test_sign_out_ends_the_session_on_the_plane(plane: LiveServer, page: Page) -> None:
    signed_in_page(page, plane.url, plane.admin_token)
    secret = str(_session_cookie(page)["value"])
    cookies = {"brev_session": secret}
    assert httpx.get(f"{plane.url}/api/v1/whoami", cookies=cookies).status_code == 200
    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert [c for c in page.context.cookies() if c["name"] == "brev_session"] == []
    # The old cookie, replayed from elsewhere, is dead.
    refused = httpx.get(f"{plane.url}/api/v1/whoami", cookies=cookies)
    assert refused.status_code == 401
    assert "signed out" in refused.json()["error"]["message"]


def test_a_write_without_the_pages_csrf_token_is_refused(plane: LiveServer, page: Page) -> None:
    signed_in_page(page, plane.url, plane.admin_token)
    cookies = {"brev_session": str(_session_cookie(page)["value"])}
    url = f"{plane.url}/api/v1/orgs/default/tokens"
    refused = httpx.post(url, json={"name": "forged"}, cookies=cookies)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"

    # A page of another origin on the same host (another port: the same site, so SameSite
    # lets the cookie go) posts as the visitor; it cannot know the CSRF token, so nothing
    # is made, by fetch or by a form.
    evil = "http://127.0.0.1:9/evil.html"
    page.route(
        "**/evil.html",
        lambda route: route.fulfill(content_type="text/html", body="<p>hello</p>"),
    )
    page.goto(evil)
    page.evaluate(
        """(url) => fetch(url, {method: "POST", mode: "no-cors", credentials: "include",
                 headers: {"Content-Type": "text/plain"}, body: '{"name": "forged"}'})
               .catch(() => null)""",
        url,
    )
    page.evaluate(
        """(url) => { const f = document.createElement("form"); f.method = "POST";
             f.action = url; f.enctype = "text/plain";
             const i = document.createElement("input"); i.name = '{"name": "forged", "x": "';
             i.value = '"}'; f.append(i); document.body.append(f); f.submit(); }""",
        url,
    )
    page.wait_for_load_state()
    with BrevClient(plane.url, plane.admin_token) as admin:
        assert "forged" not in {t.name for t in admin.tokens(org="default")}


def test_names_and_details_from_the_api_stay_text(plane: LiveServer, page: Page) -> None:
    org, _ = _member(plane)
    add_instances(f"sqlite:///{plane.home / 'brev.db'}", org, "admin@localhost", [SCRIPT, IMAGE])
    signed_in_page(page, plane.url, plane.admin_token, org)
    page.goto(plane.url + "/#/instances")
    expect(page.locator("#instance-rows > [role=row]")).to_have_count(2)
    expect(page.get_by_role("link", name=SCRIPT)).to_be_visible()
    page.get_by_role("link", name=IMAGE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(IMAGE)
    expect(page.get_by_text(f"brev shell {IMAGE}")).to_be_visible()
    page.goto(plane.url + "/#/")
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    assert page.evaluate("window.pwned") is None
    assert page.locator("script:not([src])").count() == 0


def test_a_session_of_one_org_sees_nothing_of_another(plane: LiveServer, page: Page) -> None:
    mine, token = _member(plane)
    theirs, _ = _member(plane)
    add_instances(f"sqlite:///{plane.home / 'brev.db'}", theirs, "admin@localhost", ["secret-a"])
    signed_in_page(page, plane.url, token)
    options = page.locator("#org option").all_text_contents()
    assert options == [mine]
    page.goto(plane.url + "/#/instances")
    expect(page.get_by_text("No instances yet")).to_be_visible()
    answers = page.evaluate(
        """async (orgs) => Promise.all(orgs.map(async (o) =>
             (await fetch(`/api/v1/orgs/${o}/instances`)).status))""",
        [theirs, "default"],
    )
    assert set(answers) <= {403, 404}, answers
