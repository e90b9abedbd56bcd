"""Which control plane the CLI talks to, with which token, in which org.

Stored in `$BREV_HOME/credentials.json` (mode 0600); `BREV_API_URL`, `BREV_TOKEN` and
`BREV_ORG` override what is stored, for CI jobs that never run `brev login`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from brev.errors import BrevError
from brev.home import brev_home, write_private_file

if TYPE_CHECKING:
    from brev.client import BrevClient


class NotLoggedIn(BrevError):
    def __init__(self) -> None:
        super().__init__("not logged in: run `brev login --url URL --token TOKEN`")


@dataclass(frozen=True)
class Login:
    url: str | None = None
    token: str | None = None
    org: str | None = None


def credentials_path() -> Path:
    return brev_home() / "credentials.json"


def stored_login() -> Login:
    try:
        data = json.loads(credentials_path().read_text())
    except FileNotFoundError:
        return Login()
    except (OSError, ValueError) as exc:
        raise BrevError(
            f"cannot read {credentials_path()} ({exc}); run `brev logout` and log in again"
        ) from None
    return Login(url=data.get("url"), token=data.get("token"), org=data.get("org"))


def current_login() -> Login:
    stored = stored_login()
    return Login(
        url=os.environ.get("BREV_API_URL") or stored.url,
        token=os.environ.get("BREV_TOKEN") or stored.token,
        org=os.environ.get("BREV_ORG") or stored.org,
    )


def save_login(login: Login) -> None:
    write_private_file(credentials_path(), json.dumps(asdict(login), indent=2) + "\n")


def use_org(org: str) -> None:
    save_login(replace(stored_login(), org=org))


def forget_login() -> Login:
    """Remove the stored login, even an unreadable one (that is how to recover from it)."""
    try:
        stored = stored_login()
    except BrevError:
        stored = Login()
    credentials_path().unlink(missing_ok=True)
    return stored


def connect(login: Login | None = None) -> BrevClient:
    """A client for the current login; NotLoggedIn when there is none."""
    from brev.client import BrevClient

    login = login or current_login()
    if not login.url or not login.token:
        raise NotLoggedIn()
    return BrevClient(login.url, login.token, org=login.org)
