"""The real `brev` console script, run as a subprocess against a real `brev server`.

Each test gets its own CLI home and, through the `account` fixture, its own user and org, so
tests sharing the module's server never see each other's tokens, orgs or instances.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brev import __version__, api
from brev.client import BrevClient
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import BREV, BREV_ENV_VARS, LiveServer
from tests.postgres import free_port
from tests.seed import add_instances

pytestmark = pytest.mark.slow

TOKEN_KEYS = {
    "id",
    "name",
    "prefix",
    "org",
    "owner",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "scope",
    "max_price_per_hour",
    "max_gpus",
    "max_ttl_seconds",
}
BOX_DRAWING = re.compile("[\u2500-\u257f]")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Account:
    """A user of its own, admin of an org of its own, on the module's live server."""

    server: LiveServer
    org: str
    email: str
    token: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A CLI home of its own, logged in through the environment only."""
        login = {"BREV_API_URL": self.server.url, "BREV_TOKEN": self.token, "BREV_ORG": self.org}
        return self.server.env(BREV_HOME=str(self.home), **{**login, **extra})

    def bare_env(self, **extra: str) -> dict[str, str]:
        """A CLI home of its own with no login at all."""
        return self.server.env(BREV_HOME=str(self.home), **extra)

    def client(self) -> BrevClient:
        return BrevClient(self.server.url, self.token, org=self.org)


def new_account(server: LiveServer, home: Path) -> Account:
    org, email = unique("org"), f"{unique('user')}@example.com"
    with BrevClient(server.url, server.admin_token) as admin:
        admin.create_org(org)
        added = admin.add_member(email, role=api.Role.ADMIN, org=org)
    assert added.login_token is not None
    return Account(server=server, org=org, email=email, token=added.login_token, home=home)


@pytest.fixture
def account(live_server: LiveServer, tmp_path: Path) -> Account:
    return new_account(live_server, tmp_path / "cli-home")


# -- login, whoami, logout --------------------------------------------------------------


def test_login_whoami_logout(account: Account) -> None:
    env = account.bare_env()
    credentials = account.home / "credentials.json"

    login = ok(brev("login", "--url", account.server.url, "--token", account.token, env=env))
    assert login.stdout == ""
    assert account.email in login.stderr
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text()) == {
        "url": account.server.url,
        "token": account.token,
        "org": account.org,
    }

    table = ok(brev("whoami", env=env)).stdout.splitlines()
    assert table[0].split() == ["USER", "ORG", "ROLE", "TOKEN", "URL"]
    assert table[1].split() == [account.email, account.org, "admin", "login", account.server.url]

    me = json.loads(ok(brev("whoami", "--json", env=env)).stdout)
    assert me["user"]["email"] == account.email
    assert me["memberships"] == [{"org": account.org, "role": "admin"}]
    assert me["token_name"] == "login"
    assert me["url"] == account.server.url
    assert me["org"] == account.org

    logout = ok(brev("logout", env=env))
    assert account.server.url in logout.stderr
    assert not credentials.exists()
    assert "not logged in" in one_line_error(brev("whoami", env=env))


def test_environment_overrides_the_stored_login(account: Account, tmp_path: Path) -> None:
    other = new_account(account.server, tmp_path / "other-home")
    env = account.bare_env()
    ok(brev("login", "--url", account.server.url, "--token", account.token, env=env))

    # BREV_TOKEN and BREV_ORG win over the file: another person, another org.
    overridden = account.bare_env(BREV_TOKEN=other.token, BREV_ORG=other.org)
    me = json.loads(ok(brev("whoami", "--json", env=overridden)).stdout)
    assert me["user"]["email"] == other.email
    assert me["org"] == other.org

    # BREV_API_URL wins too: pointed at nothing, the stored (working) URL is not used.
    nowhere = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(brev("whoami", env=account.bare_env(BREV_API_URL=nowhere)))
    assert nowhere in line

    # And the stored login is left as it was.
    stored = json.loads((account.home / "credentials.json").read_text())
    assert stored == {"url": account.server.url, "token": account.token, "org": account.org}


# -- orgs -------------------------------------------------------------------------------


def test_org_create_use_ls_members_invite(account: Account) -> None:
    env = account.bare_env()
    credentials = account.home / "credentials.json"
    ok(brev("login", "--url", account.server.url, "--token", account.token, env=env))
    second = unique("team")

    created = ok(brev("org", "create", second, env=env))
    assert created.stdout == ""
    assert second in created.stderr

    ok(brev("org", "use", second, env=env))
    assert json.loads(credentials.read_text())["org"] == second
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600

    line = one_line_error(brev("org", "use", "no-such-org", env=env))
    assert "no-such-org" in line
    assert json.loads(credentials.read_text())["org"] == second

    orgs = json.loads(ok(brev("org", "ls", "--json", env=env)).stdout)
    assert isinstance(orgs, list)
    assert all(set(o) == {"id", "name", "created_at", "role"} for o in orgs)
    assert sorted(o["name"] for o in orgs) == sorted([account.org, second])
    assert {o["role"] for o in orgs} == {"admin"}

    members = json.loads(ok(brev("org", "members", "--json", env=env)).stdout)
    assert [(m["email"], m["role"]) for m in members] == [(account.email, "admin")]
    assert set(members[0]) == {"email", "name", "role", "joined_at"}

    invitee = f"{unique('bob')}@example.com"
    invited = ok(brev("org", "invite", invitee, env=env))
    assert invitee in invited.stderr
    (login_token,) = invited.stdout.splitlines()
    assert login_token.startswith("brev_")
    assert login_token not in invited.stderr

    as_invitee = account.bare_env(BREV_API_URL=account.server.url, BREV_TOKEN=login_token)
    me = json.loads(ok(brev("whoami", "--json", env=as_invitee)).stdout)
    assert me["user"]["email"] == invitee
    assert me["memberships"] == [{"org": second, "role": "member"}]


# -- tokens -----------------------------------------------------------------------------


def test_token_create_ls_revoke(account: Account) -> None:
    env = account.env()

    created = ok(brev("token", "create", "--name", "ci", "--expires", "30d", env=env))
    (secret,) = created.stdout.splitlines()
    assert created.stdout == secret + "\n"
    assert secret.startswith("brev_")
    assert "ci" in created.stderr
    assert secret not in created.stderr

    as_ci = account.env(BREV_TOKEN=secret)
    me = json.loads(ok(brev("whoami", "--json", env=as_ci)).stdout)
    assert me["user"]["email"] == account.email
    assert me["token_name"] == "ci"
    assert me["token_org"] == account.org

    listed = ok(brev("token", "ls", "--json", env=env)).stdout
    assert secret not in listed
    tokens = json.loads(listed)
    assert all(set(t) == TOKEN_KEYS for t in tokens)
    (ci,) = [t for t in tokens if t["name"] == "ci"]
    assert ci["prefix"] == secret[: len(ci["prefix"])]
    assert len(ci["prefix"]) < len(secret)
    assert ci["org"] == account.org
    assert ci["owner"] == account.email
    assert ci["expires_at"] is not None
    assert ci["revoked_at"] is None
    assert ci["last_used_at"] is not None  # the whoami above used it

    revoked = ok(brev("token", "revoke", "ci", env=env))
    assert revoked.stdout == ""
    assert "ci" in revoked.stderr

    line = one_line_error(brev("whoami", env=as_ci))
    assert "brev login" in line
    assert "revoked" in line


# -- instances --------------------------------------------------------------------------


def test_ls_empty_then_seeded(account: Account) -> None:
    env = account.env()
    assert ok(brev("ls", "--json", env=env)).stdout == "[]\n"
    empty = ok(brev("ls", env=env))
    assert empty.stdout == ""
    assert account.org in empty.stderr

    database_url = f"sqlite:///{account.server.home / 'brev.db'}"
    # created a day and a half ago: the fast and the full `ls`, seconds apart, both print 1d
    long_ago = datetime.now(UTC) - timedelta(hours=36)
    add_instances(database_url, account.org, account.email, ["alpha", "beta-two"], long_ago)

    instances = json.loads(ok(brev("ls", "--json", env=env)).stdout)
    assert [i["name"] for i in instances] == ["alpha", "beta-two"]
    for instance in instances:
        assert set(instance) == set(api.Instance.model_fields)
        assert instance["org"] == account.org
        assert instance["created_by"] == account.email
        assert instance["status"] == "running"
        assert instance["gpu_count"] == 8
        assert instance["price_per_hour"] == pytest.approx(40.97)

    # the fast path (urllib, brev.cli.listing) and the full CLI print the same bytes
    slow = {**env, "BREV_FAST": "0"}
    for args in (["ls"], ["ls", "--json"]):
        assert ok(brev(*args, env=env)).stdout == ok(brev(*args, env=slow)).stdout

    table = ok(brev("ls", env=env)).stdout
    assert not BOX_DRAWING.search(table), table
    header, *rows = table.splitlines()
    columns = ["NAME", "STATUS", "HEALTH", "GPU", "PROVIDER", "$/H", "AGE", "EXPIRES"]
    assert header.split() == columns
    assert len(rows) == 2
    starts = [header.index(c) for c in columns]
    expected = {
        "alpha": ["alpha", "running", "healthy", "A100-80GB x8", "aws/us-east-1", "40.97"],
        "beta-two": ["beta-two", "running", "healthy", "A100-80GB x8", "aws/us-east-1", "40.97"],
    }
    for row in rows:
        # Every cell starts in its header's column: plain, aligned columns.
        cells = [
            row[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)
        ]
        assert cells[:-2] == expected[cells[0]], row
        assert re.fullmatch(r"\d+[smhd]", cells[-2]), row
        assert cells[-1] == "-", row  # no TTL, no lease


# -- one-line errors --------------------------------------------------------------------


def test_wrong_token(account: Account) -> None:
    env = account.env(BREV_TOKEN="brev_" + uuid.uuid4().hex)
    line = one_line_error(brev("ls", env=env))
    assert "invalid token" in line
    assert "brev login" in line


def test_expired_token(account: Account) -> None:
    env = account.env()
    short = ok(brev("token", "create", "--name", "short", "--expires", "1s", env=env))
    created = time.monotonic()
    as_short = account.env(BREV_TOKEN=short.stdout.strip())
    time.sleep(max(0.0, 1.5 - (time.monotonic() - created)))
    line = one_line_error(brev("ls", env=as_short))
    assert "expired" in line
    assert "brev login" in line


def test_server_unreachable(account: Account) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(brev("ls", env=account.env(BREV_API_URL=nowhere)))
    assert nowhere in line
    assert "cannot reach" in line


def test_not_logged_in(tmp_path: Path, live_server: LiveServer) -> None:
    env = live_server.env(BREV_HOME=str(tmp_path / "nobody"))
    line = one_line_error(brev("ls", env=env))
    assert "not logged in" in line
    assert "brev login" in line


def test_invalid_name(account: Account) -> None:
    line = one_line_error(brev("org", "create", "Bad_Name", env=account.env()))
    assert "name:" in line
    assert "Bad_Name" in line
    assert api.NAME_RULE in line
    with account.client() as client:
        assert "bad_name" not in {o.name.lower() for o in client.orgs()}


def test_bad_expires(account: Account) -> None:
    line = one_line_error(
        brev("token", "create", "--name", "ci", "--expires", "3y", env=account.env())
    )
    assert "--expires" in line
    assert "3y" in line
    with account.client() as client:
        assert client.tokens() == []


# -- help and version -------------------------------------------------------------------


def plain_env(**extra: str) -> dict[str, str]:
    """The environment without any brev login or home: commands that need no server."""
    return {**{k: v for k, v in os.environ.items() if k not in BREV_ENV_VARS}, **extra}


def test_help_lists_panels_in_order() -> None:
    help_text = ok(brev("--help", env=plain_env(COLUMNS="100"))).stdout

    def line_of(word: str) -> int:
        """The first line that starts with `word` (after any indent or box drawing)."""
        lines = help_text.splitlines()
        found = [n for n, line in enumerate(lines) if re.match(rf"^[^\w$]*{word}\b", line)]
        assert found, f"{word!r} is not in:\n{help_text}"
        return found[0]

    instances, organization, configuration = (
        line_of(panel) for panel in ("Instances", "Organization", "Configuration")
    )
    assert instances < organization < configuration, help_text
    # Each command sits in its panel.
    assert instances < line_of("ls") < organization
    assert organization < line_of("org") < configuration
    assert organization < line_of("token") < configuration
    for command in ("login", "logout", "whoami"):
        assert configuration < line_of(command), command


def test_version() -> None:
    env = plain_env()
    assert ok(brev("version", env=env)).stdout == f"brev {__version__}\n"
    assert json.loads(ok(brev("version", "--json", env=env)).stdout) == {"version": __version__}


# -- settings that cannot be right -------------------------------------------------------


def test_malformed_url_is_a_one_line_error(account: Account) -> None:
    line = one_line_error(brev("ls", env=account.env(BREV_API_URL="http://127.0.0.1:abc")))
    assert "127.0.0.1:abc" in line


def test_non_ascii_token_is_a_one_line_error(account: Account) -> None:
    line = one_line_error(brev("ls", env=account.env(BREV_TOKEN="brev_tökén")))
    assert "token" in line
    assert "tökén" not in line


def test_a_url_without_a_scheme_is_named_as_such(account: Account) -> None:
    line = one_line_error(brev("ls", env=account.env(BREV_API_URL="127.0.0.1:8080")))
    assert "expected http://HOST:PORT" in line


def test_a_token_with_a_trailing_newline_still_works(account: Account) -> None:
    result = brev("ls", "--json", env=account.env(BREV_TOKEN=account.token + "\n"))
    assert ok(result).stdout == "[]\n"


def test_logout_recovers_from_an_unreadable_credentials_file(tmp_path: Path) -> None:
    (tmp_path / "credentials.json").write_text("{not json")
    env = {"BREV_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    broken = subprocess.run([BREV, "ls"], env=env, capture_output=True, text=True, timeout=30)
    assert broken.returncode == 1
    assert "run `brev logout`" in broken.stderr and "Traceback" not in broken.stderr
    logout = subprocess.run([BREV, "logout"], env=env, capture_output=True, text=True, timeout=30)
    assert logout.returncode == 0, logout.stderr
    assert not (tmp_path / "credentials.json").exists()


def test_the_fast_paths_import_no_heavy_package() -> None:
    """`brev ls`, `brev exec` and `brev run --on` start without typer, httpx or pydantic
    (brev.cli.launch)."""
    code = (
        "import sys, brev.cli.launch, brev.cli.listing, brev.ssh.config, brev.cli.login_state;"
        "import brev.cli.run.fast, brev.cli.run.remote, brev.cli.run.ssh_session;"
        "print(sorted(m for m in ('typer', 'httpx', 'pydantic', 'rich') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
