"""`brev dashboard`: a single-use sign-in link, opened in the user's browser or printed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx

from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import LiveServer


def _logged_in_env(live_server: LiveServer, **extra: str) -> dict[str, str]:
    env = live_server.env(**extra)
    ok(brev("login", "--url", live_server.url, "--token", live_server.admin_token, env=env))
    return env


def _signs_in_once(live_server: LiveServer, url: str) -> None:
    base, _, code = url.partition("/#login=")
    assert base == live_server.url
    first = httpx.post(f"{base}/api/v1/web/sessions", json={"login_code": code})
    assert first.status_code == 201
    assert first.json()["email"] == "admin@localhost"
    assert httpx.post(f"{base}/api/v1/web/sessions", json={"login_code": code}).status_code == 401


def test_the_link_is_opened_in_the_browser(live_server: LiveServer, tmp_path: Path) -> None:
    # Python's webbrowser runs $BROWSER with the URL: a stand-in that writes it down.
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    env = _logged_in_env(live_server, BROWSER=str(browser))
    result = ok(brev("dashboard", env=env))
    assert result.stdout == ""  # the code went to the browser only
    assert "opened the dashboard" in result.stderr
    _signs_in_once(live_server, opened.read_text())


def test_without_a_browser_the_link_is_printed(live_server: LiveServer) -> None:
    env = _logged_in_env(live_server)
    env.pop("BROWSER", None)
    env.pop("DISPLAY", None)
    result = ok(brev("dashboard", "--no-browser", env=env))
    _signs_in_once(live_server, result.stdout.strip())
    assert "works once, for 2 minutes" in result.stderr


def test_json_gives_the_link_and_its_expiry(live_server: LiveServer) -> None:
    env = _logged_in_env(live_server)
    answer = json.loads(ok(brev("dashboard", "--json", env=env)).stdout)
    assert set(answer) == {"url", "expires_at"}
    _signs_in_once(live_server, answer["url"])


def test_not_logged_in_says_how_to_log_in(live_server: LiveServer) -> None:
    env = live_server.env()
    env["BREV_HOME"] = os.fspath(Path(env["HOME"]) / "empty-home")
    assert "brev login" in one_line_error(brev("dashboard", env=env))
