"""The dashboard's Org page against a real plane: an admin invites a member (the login token
shown once), changes roles (never the last admin's: the plane's message), creates and revokes
a token (the secret shown once), picks a provider from the plane's list and fills the fields
its config keys make (a wrong key: the plane's message), adds moto as the org's AWS (never
shown back) and removes it, and reads the audit log with filters and paging; a member is
offered none of an admin's controls; names with markup stay text."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import FilePayload, Page, expect

from brev import api
from brev.client import BrevClient
from tests.conftest import LiveServer
from tests.dashboard_browser import screenshot, signed_in_page
from tests.fake_lambda import FakeLambda
from tests.moto import MotoServer

pytestmark = pytest.mark.slow

MARKUP = "<script>alert(1)</script>"


@pytest.fixture
def org(live_server: LiveServer) -> str:
    """An org of its own, whose only admin is the plane's bootstrap admin."""
    name = f"org-{uuid.uuid4().hex[:8]}"
    with BrevClient(live_server.url, live_server.admin_token) as admin:
        admin.create_org(name)
    return name


def admin_email(live_server: LiveServer) -> str:
    with BrevClient(live_server.url, live_server.admin_token) as admin:
        return admin.whoami().user.email


def open_org(page: Page, live_server: LiveServer, token: str, org: str) -> None:
    signed_in_page(page, live_server.url, token, org)
    page.goto(live_server.url + "/#/org")
    expect(page.get_by_role("heading", name="Members")).to_be_visible()
    expect(page.locator("#org-members tbody tr").first).to_be_visible()


def confirm(page: Page, button: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button).click()
    expect(dialog).to_have_count(0)


def test_admin_manages_members_tokens_credentials_and_reads_the_audit_log(
    live_server: LiveServer, moto_server: MotoServer, org: str, page: Page
) -> None:
    me = admin_email(live_server)
    open_org(page, live_server, live_server.admin_token, org)
    members = page.locator("#org-members")
    alert = page.get_by_role("alert")

    # Invite: the new member's login token, once, with a copy button. Its name is markup.
    email = f"m-{uuid.uuid4().hex[:6]}@example.com"
    members.get_by_label("Email").fill(email)
    members.get_by_label("Name (optional)").fill(MARKUP)
    members.get_by_label("Role", exact=True).select_option("member")
    members.get_by_role("button", name="Invite").click()
    expect(page.locator("#login-token")).to_have_text(re.compile(r"^\S{20,}$"))
    login_token = page.locator("#login-token").inner_text()
    expect(members).to_contain_text("will not be shown again")
    expect(members.get_by_role("button", name=re.compile("^Copy token"))).to_be_visible()
    row = members.locator("tbody tr", has_text=email)
    expect(row.locator("td").first).to_have_text(MARKUP)  # text, not a script
    expect(members.locator("script")).to_have_count(0)
    with BrevClient(live_server.url, login_token) as member:
        assert member.whoami().user.email == email  # the token shown is the member's

    # After a reload the token is gone for good.
    page.reload()
    expect(members.locator("tbody tr", has_text=email)).to_be_visible()
    expect(page.locator("#login-token")).to_have_count(0)
    expect(page.get_by_text(login_token)).to_have_count(0)

    # Roles: make the member an admin and back, through the row's select.
    with BrevClient(live_server.url, live_server.admin_token, org=org) as admin:

        def role_of(who: str) -> str:
            return next(m.role for m in admin.members() if m.email == who)

        members.get_by_label(f"Role of {email}").select_option("admin")
        assert _eventually(lambda: role_of(email) == api.Role.ADMIN)
        members.get_by_label(f"Role of {email}").select_option("member")
        assert _eventually(lambda: role_of(email) == api.Role.MEMBER)

        # The last admin may not step down: the plane says so, and the select stays.
        members.get_by_label(f"Role of {me}").select_option("member")
        confirm(page, "Make me a member")
        expect(alert).to_contain_text("last admin")
        expect(members.get_by_label(f"Role of {me}")).to_have_value("admin")
        assert role_of(me) == api.Role.ADMIN

    # Tokens: a name the plane refuses comes back as its message, markup and all, as text.
    tokens = page.locator("#org-tokens")
    tokens.get_by_label("Token name").fill(MARKUP)
    tokens.get_by_role("button", name="Create token").click()
    expect(tokens.get_by_role("alert")).to_contain_text(MARKUP)
    expect(tokens.locator("script")).to_have_count(0)

    # Create one: the secret once, then revoke it.
    tokens.get_by_label("Token name").fill("ci-web")
    tokens.get_by_label("Expires").select_option(label="30 days")
    tokens.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-secret")).to_have_text(re.compile(r"^\S{20,}$"))
    secret = page.locator("#token-secret").inner_text()
    expect(tokens).to_contain_text("shown only once")
    expect(tokens.get_by_role("alert")).to_have_count(0)
    token_row = tokens.locator("tbody tr[data-token='ci-web']")
    expect(token_row).to_contain_text("active")
    expect(token_row).to_contain_text("never")  # not used yet
    expect(token_row).to_contain_text("in 29d")
    with BrevClient(live_server.url, secret, org=org) as ci:
        assert ci.whoami().token_name == "ci-web"
    page.reload()
    expect(token_row).to_contain_text("ago")  # last used: just now
    expect(page.locator("#token-secret")).to_have_count(0)

    # Credentials: the providers on offer are the plane's (GET /providers), by display name.
    posts: list[str] = []

    page.on(
        "request",
        lambda r: posts.append(r.url) if r.method == "POST" and "/providers" in r.url else None,
    )
    credentials = page.locator("#org-credentials")
    expect(credentials).to_contain_text("No cloud credentials yet")
    chooser = credentials.get_by_label("Provider")
    expect(chooser.locator("option[value='lambda']")).to_have_count(1)
    offered = dict(
        chooser.locator("option:not([value=''])").evaluate_all(
            "options => options.map(o => [o.value, o.textContent])"
        )
    )
    assert {"aws": "AWS", "gcp": "GCP", "lambda": "Lambda Cloud"}.items() <= offered.items()

    # One field per config key: AWS's secret is a password field, its profile (read by the
    # CLI alone) is not asked for; GCP's key file is a textarea with a file picker.
    chooser.select_option("gcp")
    expect(credentials.get_by_label("Project")).to_have_attribute("required", "")
    key_file = credentials.locator("textarea[data-key='credentials_json']")
    expect(key_file).to_have_accessible_description("service-account JSON key")
    key_json = FilePayload(name="key.json", mimeType="application/json", buffer=b'{"k": 1}')
    credentials.get_by_label("Credentials JSON: read from a file").set_input_files(key_json)
    expect(key_file).to_have_value('{"k": 1}')
    chooser.select_option("aws")
    expect(key_file).to_have_count(0)
    access_key = credentials.get_by_label("Access key ID")
    secret_field = credentials.get_by_label("Secret access key")
    endpoint = credentials.get_by_label("Endpoint URL (optional)")
    expect(secret_field).to_have_attribute("type", "password")
    expect(secret_field).to_have_attribute("autocomplete", "off")
    expect(credentials.get_by_label("Session token (optional)")).to_have_attribute(
        "type", "password"
    )
    expect(access_key).to_have_attribute("type", "text")
    expect(credentials.locator("[data-key='profile']")).to_have_count(0)

    # Required keys left empty: the browser says so, and no request.
    credentials.get_by_role("button", name="Add credentials").click()
    assert access_key.evaluate("input => input.validity.valueMissing")
    assert posts == []

    # A wrong key: the plane's message, and the key nowhere on the page.
    with FakeLambda() as fake:
        chooser.select_option("lambda")
        wrong = f"secret_wrong_{uuid.uuid4().hex}"
        credentials.get_by_label("API key").fill(wrong)
        credentials.get_by_label("Endpoint URL (optional)").fill(fake.url)
        credentials.get_by_role("button", name="Add credentials").click()
        expect(credentials.get_by_role("alert")).to_contain_text(
            "Lambda Cloud rejected these credentials"
        )
        expect(credentials.get_by_role("alert")).to_contain_text("API key was invalid")
        assert wrong not in credentials.get_by_role("alert").inner_text()
    expect(credentials.locator("tbody tr[data-provider='lambda']")).to_have_count(0)
    assert len(posts) == 1

    # Moto as the org's AWS: listed with who it is, never what.
    chooser.select_option("aws")
    secret_key = f"sekrit-{uuid.uuid4().hex}"
    config = moto_server.config()
    access_key.fill(config["access_key_id"])
    secret_field.fill(secret_key)
    endpoint.fill(config["endpoint_url"])
    credentials.get_by_role("button", name="Add credentials").click()
    aws = credentials.locator("tbody tr[data-provider='aws']")
    expect(aws).to_contain_text("account")
    expect(aws).to_contain_text(me)
    expect(credentials.get_by_role("alert")).to_have_count(0)
    for field in (access_key, secret_field, endpoint):
        expect(field).to_have_value("")  # the secrets leave the page
    assert len(posts) == 2
    page.reload()
    expect(aws).to_be_visible()
    assert secret_key not in page.content()

    # The audit log has it all; filtering by kind narrows it to the member events.
    audit = page.locator("#org-audit")
    audit_rows = audit.locator("tbody tr")
    expect(audit_rows.filter(has_text="provider.add")).to_have_count(1)
    expect(audit_rows.filter(has_text="token.create")).to_have_count(1)
    everything = audit_rows.count()
    chooser.select_option("aws")  # the screenshot shows AWS's fields, empty
    expect(access_key).to_have_value("")
    screenshot(page, "org")
    audit.get_by_label("Kind").fill("member.")
    audit.get_by_role("button", name="Filter").click()
    expect(audit_rows.filter(has_text="token.create")).to_have_count(0)
    actions = audit.locator("tbody tr th code")
    expect(actions.first).to_have_text(re.compile(r"^member\."))
    texts = actions.all_inner_texts()
    assert texts and all(t.startswith("member.") for t in texts), texts
    assert {"member.add", "member.role"} <= set(texts)
    assert len(texts) < everything
    audit.get_by_label("Actor").fill("plane")
    audit.get_by_role("button", name="Filter").click()
    expect(audit).to_contain_text("No events match")
    audit.get_by_role("button", name="Clear").click()
    expect(audit_rows).to_have_count(everything)

    # Remove the credentials (confirmed), then revoke the token (confirmed).
    aws.get_by_role("button", name="Remove aws credentials").click()
    confirm(page, "Remove")
    expect(aws).to_have_count(0)
    expect(credentials).to_contain_text("No cloud credentials yet")
    expect(audit_rows.filter(has_text="provider.remove")).to_have_count(1)

    token_row.get_by_role("button", name="Revoke").click()
    confirm(page, "Revoke")
    expect(token_row).to_contain_text("revoked")
    expect(token_row.get_by_role("button")).to_have_count(0)
    expect(audit_rows.filter(has_text="token.revoke")).to_have_count(1)

    # Remove the member (confirmed).
    members.get_by_role("button", name=f"Remove {email}").click()
    confirm(page, "Remove")
    expect(members.locator("tbody tr", has_text=email)).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)

    # Inviting them again: they have an account, so no new login token.
    members.get_by_label("Email").fill(email)
    members.get_by_role("button", name="Invite").click()
    expect(members.get_by_role("status")).to_contain_text("already have a brev account")
    expect(page.locator("#login-token")).to_have_count(0)
    expect(members.locator("tbody tr", has_text=email)).to_be_visible()


def test_an_admin_who_steps_down_sees_the_page_as_a_member(
    live_server: LiveServer, org: str, page: Page
) -> None:
    email = f"a-{uuid.uuid4().hex[:6]}@example.com"
    with BrevClient(live_server.url, live_server.admin_token, org=org) as admin:
        added = admin.add_member(email, role=api.Role.ADMIN)
    assert added.login_token is not None
    open_org(page, live_server, added.login_token, org)
    members = page.locator("#org-members")
    expect(members.get_by_role("button", name="Invite")).to_be_visible()
    members.get_by_label(f"Role of {email}").select_option("member")
    confirm(page, "Make me a member")
    expect(page.get_by_text("a member of this org")).to_be_visible()
    expect(members.locator("tbody tr").first).to_be_visible()
    expect(members.locator("form, select, button")).to_have_count(0)


def test_a_member_is_offered_no_admin_controls(
    live_server: LiveServer, org: str, page: Page
) -> None:
    email = f"m-{uuid.uuid4().hex[:6]}@example.com"
    with BrevClient(live_server.url, live_server.admin_token, org=org) as admin:
        added = admin.add_member(email, role=api.Role.MEMBER, name=MARKUP)
        admin.create_token("admins-own")
    assert added.login_token is not None
    open_org(page, live_server, added.login_token, org)
    expect(page.get_by_text("a member of this org")).to_be_visible()

    # Members: read only.
    members = page.locator("#org-members")
    expect(members.locator("tbody tr")).to_have_count(2)
    expect(members.locator("form")).to_have_count(0)
    expect(members.locator("select")).to_have_count(0)
    expect(members.get_by_role("button")).to_have_count(0)
    expect(members.locator("tbody tr", has_text=email)).to_contain_text(MARKUP)

    # Credentials: the list, no add or remove.
    credentials = page.locator("#org-credentials")
    expect(credentials).to_contain_text("an admin adds them")
    expect(credentials.locator("form")).to_have_count(0)
    expect(credentials.get_by_role("button")).to_have_count(0)

    # Tokens: only their own, and they may make one.
    tokens = page.locator("#org-tokens")
    expect(tokens.locator("tbody tr[data-token='login']")).to_be_visible()
    expect(tokens.locator("tbody tr[data-token='admins-own']")).to_have_count(0)
    tokens.get_by_label("Token name").fill("mine")
    tokens.get_by_role("button", name="Create token").click()
    expect(page.locator("#token-secret")).to_be_visible()
    expect(tokens.locator("tbody tr[data-token='mine']")).to_contain_text(email)
    expect(tokens.locator("tbody tr[data-token='mine']").get_by_role("button")).to_have_text(
        "Revoke"
    )

    # The audit log is everyone's to read.
    expect(page.locator("#org-audit tbody tr").filter(has_text="token.create")).to_have_count(2)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_the_audit_log_pages_back_with_older(live_server: LiveServer, org: str, page: Page) -> None:
    with BrevClient(live_server.url, live_server.admin_token, org=org) as admin:
        for n in range(30):  # 60 events and the org's creation
            admin.create_token(f"t{n}")
            admin.revoke_token(f"t{n}")
        newest = admin.events(limit=1)[0].id
    open_org(page, live_server, live_server.admin_token, org)
    audit = page.locator("#org-audit")
    rows = audit.locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.first).to_have_attribute("data-id", str(newest))
    audit.get_by_role("button", name="Older").click()
    expect(rows).to_have_count(61)
    expect(rows.last).to_contain_text("org.create")
    expect(audit.get_by_role("button", name="Older")).to_be_hidden()
    ids = [int(i) for i in rows.evaluate_all("rows => rows.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 61


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False
