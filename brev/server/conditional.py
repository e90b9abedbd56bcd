"""Conditional GETs for the lists the dashboard re-reads: a weak ETag over the JSON body, and
304 with no body when the page already has it.

The tag is a digest of the bytes sent, so it changes exactly when the answer does, whoever
(which replica, which process) changed the data; the page skips parsing and redrawing an
unchanged list, and the network carries a few hundred bytes instead of the whole list.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request, Response
from pydantic import TypeAdapter


def json_or_not_modified(request: Request, adapter: TypeAdapter[Any], value: Any) -> Response:
    body = adapter.dump_json(value)
    tag = f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in _tags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type="application/json")


def _tags(header: str | None) -> set[str]:
    """The tags an If-None-Match names; weak and strong compare alike (RFC 9110's weak
    comparison, which is what GET conditionals use)."""
    if not header:
        return set()
    tags = {t.strip() for t in header.split(",")}
    return tags | {t.removeprefix("W/") for t in tags} | {f"W/{t}" for t in tags}
