"""For scripts and coding agents: every command that prints data takes --json (one JSON document
on stdout, messages on stderr), and nothing waits for an answer without a terminal: the real
`brev` console script against a real `brev server`, stdin closed."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from brev import api
from brev.cli.main import app
from tests.cli_runner import brev, ok, one_line_error
from tests.seed import add_instances
from tests.test_cli import Account, account, unique

__all__ = ["account"]
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# Commands whose output is not data: a session, a held tunnel, a daemon, a document, a
# message. Everything else must take --json; a command added without it fails below.
WITHOUT_JSON = {
    "shell",  # an interactive session
    "exec",  # the remote command's own output and exit code
    "cp",  # scp's
    "port-forward",  # held until Ctrl-C; its one line says where
    "jupyter",  # held until Ctrl-C; the URL alone on stdout
    "open",  # hands over to the editor
    "logout",  # a message: nothing to read back
    "server",  # the control plane itself
    "agent run",  # the agent's daemon
    "skill",  # prints SKILL.md, a document for agents
}


def leaf_commands() -> Iterator[tuple[str, Any]]:
    """(`nodes show`, its click command) for every visible command of the real tree."""

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        children = getattr(command, "commands", None)
        if children is None:
            yield " ".join(path), command
            return
        for name, child in children.items():
            if not child.hidden:
                yield from walk(child, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def test_every_command_that_prints_data_takes_json() -> None:
    commands = dict(leaf_commands())
    assert set(commands) >= WITHOUT_JSON, WITHOUT_JSON - set(commands)
    missing = [
        path
        for path, command in commands.items()
        if path not in WITHOUT_JSON
        and not any("--json" in getattr(p, "opts", []) for p in command.params)
    ]
    assert missing == []


def test_no_question_is_asked_outside_the_terminal_guard() -> None:
    """typer.confirm, typer.prompt and input() only in brev/cli/prompts.py, which fails
    without a terminal instead of waiting."""
    asking = []
    for path in sorted((REPO / "brev").rglob("*.py")):
        if path == REPO / "brev" / "cli" / "prompts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            called = ast.unparse(node.func)
            if called in ("typer.confirm", "typer.prompt", "input", "click.confirm"):
                asking.append(f"{path.relative_to(REPO)}:{node.lineno} {called}")
    assert asking == []


# -- instances ----------------------------------------------------------------------------


def seeded(account: Account, *names: str) -> None:
    add_instances(
        f"sqlite:///{account.server.home / 'brev.db'}", account.org, account.email, list(names)
    )


def test_instance_actions_print_the_instances(account: Account) -> None:
    env = account.env()
    seeded(account, "alpha", "beta")

    stopped = json.loads(ok(brev("stop", "alpha", "beta", "--json", env=env)).stdout)
    assert [(i["name"], i["desired_status"]) for i in stopped] == [
        ("alpha", "stopped"),
        ("beta", "stopped"),
    ]
    assert set(stopped[0]) == set(api.InstanceDetail.model_fields)
    started = json.loads(ok(brev("start", "alpha", "--json", env=env)).stdout)
    assert [(i["name"], i["desired_status"]) for i in started] == [("alpha", "running")]

    autostop = json.loads(ok(brev("autostop", "alpha", "30m", "--json", env=env)).stdout)
    assert (autostop["autostop_idle_seconds"], autostop["autostop_delete"]) == (1800, False)
    off = json.loads(ok(brev("autostop", "alpha", "off", "--json", env=env)).stdout)
    assert off["autostop_idle_seconds"] is None
    ttl = json.loads(ok(brev("ttl", "alpha", "2h", "--json", env=env)).stdout)
    assert ttl["name"] == "alpha" and ttl["expires_at"] is not None

    # no terminal: refused in one line naming the flag, and nothing is deleted
    assert "pass -y" in one_line_error(brev("delete", "alpha", env=env))
    deleted = json.loads(ok(brev("delete", "alpha", "beta", "-y", "--json", env=env)).stdout)
    assert [(i["name"], i["desired_status"]) for i in deleted] == [
        ("alpha", "deleted"),
        ("beta", "deleted"),
    ]


# -- org, tokens, login -------------------------------------------------------------------


def test_org_and_token_changes_print_what_they_made(account: Account) -> None:
    env = account.env()
    name = unique("team")
    created = json.loads(ok(brev("org", "create", name, "--json", env=env)).stdout)
    assert set(created) == set(api.Org.model_fields)
    assert (created["name"], created["role"]) == (name, "admin")

    email = f"{unique('new')}@example.com"
    invited = json.loads(ok(brev("org", "invite", email, "--json", env=env)).stdout)
    assert invited["member"]["email"] == email and invited["member"]["role"] == "member"
    assert invited["login_token"].startswith("brev_")
    removed = json.loads(ok(brev("org", "remove", email, "--json", env=env)).stdout)
    assert removed == {"org": account.org, "removed": email}

    ok(brev("token", "create", "--name", "ci", env=env))
    revoked = json.loads(ok(brev("token", "revoke", "ci", "--json", env=env)).stdout)
    assert revoked["name"] == "ci" and revoked["revoked_at"] is not None
    assert "secret" not in revoked

    # org use writes the stored login, so it runs with one (not the environment's org)
    home_env = account.bare_env()
    ok(brev("login", "--url", account.server.url, "--token", account.token, env=home_env))
    used = json.loads(ok(brev("org", "use", name, "--json", env=home_env)).stdout)
    assert used == created


def test_login_prints_what_whoami_prints(account: Account) -> None:
    env = account.bare_env()
    # no terminal and no --token: one line saying which flag, nothing stored
    line = one_line_error(brev("login", "--url", account.server.url, env=env))
    assert "--token" in line
    assert not (account.home / "credentials.json").exists()

    login = ok(
        brev("login", "--url", account.server.url, "--token", account.token, "--json", env=env)
    )
    assert json.loads(login.stdout) == json.loads(ok(brev("whoami", "--json", env=env)).stdout)
    assert account.email in login.stderr


# -- nodes and SSH -------------------------------------------------------------------------


def test_refresh_and_nodes_rm_print_json(account: Account) -> None:
    env = account.env(BREV_SSH_CONFIG="0")
    with account.client() as client:
        client.register_node(
            api.NodeRegister(
                name="spark",
                facts={"os": "Ubuntu 24.04", "node_home": "/opt/brev-node"},
                ssh_host="127.0.0.1",
                ssh_user="ubuntu",
            )
        )
    refreshed = json.loads(ok(brev("refresh", "--json", env=env)).stdout)
    assert refreshed["ssh_config"] == str(account.home / "ssh_config")
    [machine] = refreshed["machines"]
    assert (machine["alias"], machine["kind"], machine["host"]) == (
        "node-spark",
        "node",
        "127.0.0.1",
    )
    assert "certificate" not in machine

    removed = json.loads(ok(brev("nodes", "rm", "spark", "--json", env=env)).stdout)
    assert removed["name"] == "spark"
    assert set(removed) == set(api.NodeDetail.model_fields)
