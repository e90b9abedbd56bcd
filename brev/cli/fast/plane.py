"""One GET to the control plane as the current login, on the standard library alone.

urllib.request and http.client import email, ssl, hashlib and more: about 20 ms, as long as
the request itself. A plane at a plain http:// URL (one on this machine, a lab's) is asked with
a single HTTP/1.1 request on a socket instead; https://, or a proxy in the environment, goes
through urllib, whose cost the TLS handshake dwarfs anyway. Anything unusual (no login, an
error status, a redirect, a chunked or cut-off body, a value the CLI would refuse) returns
None: the full CLI then makes the request again and says what went wrong, in its own words.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing itself costs 3 ms of start-up; mypy reads this name as usual
if TYPE_CHECKING:
    import socket
    from typing import Any

API_PREFIX = "/api/v1"  # as brev.api.API_PREFIX, without importing pydantic
TIMEOUT_S = 30.0  # as BrevClient's default
# Names the fast paths put in a URL as they are; anything else is left to the full CLI.
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# Query values: RFC 3986's unreserved characters go as they are, the rest percent-encoded.
_UNRESERVED = _NAME_CHARS | {"~"}
# A proxy the full CLI (httpx) would go through: urllib honours them too, a bare socket not.
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")


class Login:
    """The login brev.cli.login_state.current_login() returns, read without its imports
    (dataclasses and pathlib cost 15 ms); a test keeps the two equal."""

    __slots__ = ("org", "token", "url")

    def __init__(self, url: str | None, token: str | None, org: str | None) -> None:
        self.url, self.token, self.org = url, token, org


def current_login() -> Login | None:
    """The environment over $BREV_HOME/credentials.json; None when that file cannot be read
    (the full CLI says why)."""
    home = os.environ.get("BREV_HOME")
    home = os.path.expanduser(home) if home else os.path.join(os.path.expanduser("~"), ".brev")
    try:
        with open(os.path.join(home, "credentials.json"), encoding="utf-8") as stored:
            data = json.load(stored)
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return Login(
        url=os.environ.get("BREV_API_URL") or data.get("url"),
        token=os.environ.get("BREV_TOKEN") or data.get("token"),
        org=os.environ.get("BREV_ORG") or data.get("org"),
    )


def is_plain_name(text: str) -> bool:
    """A name (org, instance) that goes into a URL path unchanged."""
    return bool(text) and set(text) <= _NAME_CHARS


def get_org_json(suffix: str, query: dict[str, str] | None = None) -> tuple[Login, Any] | None:
    """GET /api/v1/orgs/ORG`suffix` as the current login: the login and the parsed JSON body of
    a 200 answer; None for anything else."""
    login = current_login()
    if login is None or not (login.url and login.token and login.org):
        return None
    url, token = login.url.strip().rstrip("/"), login.token.strip()
    if not token.isascii() or not token.isprintable() or " " in token:
        return None
    if not is_plain_name(login.org):
        return None
    target = f"{API_PREFIX}/orgs/{login.org}{suffix}"
    if query:
        target += "?" + "&".join(f"{key}={_quote(value)}" for key, value in query.items())
    if url.startswith("http://") and not any(os.environ.get(name) for name in _PROXY_VARIABLES):
        body = _get_plain(url.removeprefix("http://"), target, token)
    elif url.startswith(("http://", "https://")):
        body = _get_urllib(url + target, token)
    else:
        return None
    if body is None:
        return None
    try:
        return login, json.loads(body, parse_constant=_refuse_constant)
    except ValueError:
        return None


def _quote(value: str) -> str:
    return "".join(
        char if char in _UNRESERVED else "".join(f"%{byte:02X}" for byte in char.encode())
        for char in value
    )


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity: the full CLI's models refuse them, so it must be the one to answer.
    raise ValueError(name)


def _get_plain(authority_and_path: str, target: str, token: str) -> bytes | None:
    """The body of a 200 answer to GET `target` from http://`authority_and_path`."""
    authority, _, prefix = authority_and_path.partition("/")
    host, colon, port_text = authority.rpartition(":")
    if not colon:
        host, port_text = authority, "80"
    # IPv6 literals, user info, a query or fragment in the URL: urllib's business, not ours.
    if not host or not port_text.isdigit() or any(c in authority_and_path for c in "[]@?#%"):
        return None
    path = f"/{prefix.rstrip('/')}{target}" if prefix else target
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    import socket

    try:
        # The host as bytes: a str is encoded with the idna codec, whose import (unicodedata,
        # stringprep) costs more than the lookup. A name that is not ASCII is urllib's.
        address = (host.encode("ascii"), int(port_text))
        with socket.create_connection(address, timeout=TIMEOUT_S) as connection:  # type: ignore[arg-type]
            connection.sendall(request)
            return _read_answer(connection)
    except (OSError, ValueError):
        return None


def _read_answer(connection: socket.socket) -> bytes | None:
    """The body of a 200 answer with a Content-Length, read up to that length."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    if status.split(" ", 2)[1:2] != ["200"]:
        return None
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if "transfer-encoding" in headers or "content-encoding" in headers or not length.isdigit():
        return None
    parts = [body]
    left = int(length) - len(body)
    while left > 0:
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts) if left == 0 else None


def _get_urllib(url: str, token: str) -> bytes | None:
    import urllib.request

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        # The full CLI follows none, and urllib would send the token on to the new place.
        def redirect_request(self, *_: Any) -> None:
            return None

    request = urllib.request.Request(  # noqa: S310 (http or https, checked by the caller)
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    try:
        with urllib.request.build_opener(NoRedirects).open(request, timeout=TIMEOUT_S) as response:
            if response.status != 200:
                return None
            body: bytes = response.read()
            return body
    except Exception:  # any: the full CLI repeats the request and says what went wrong
        return None


def write_json(data: Any) -> None:
    """What the full CLI's print_json prints for the same answer: two-space indent, UTF-8 as
    is. Callers make sure the answer has nothing the two would print differently."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def prints_alike(value: Any) -> bool:
    """Whether json.dumps prints `value` as pydantic's to_json does: they differ only on floats
    written with an exponent (1e-05 against 1e-5)."""
    if isinstance(value, float):
        return "e" not in repr(value)
    if isinstance(value, dict):
        return all(prints_alike(item) for item in value.values())
    if isinstance(value, list):
        return all(prints_alike(item) for item in value)
    return True
