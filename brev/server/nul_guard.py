"""Text with a NUL character is a 422 on both backends, before anything reads it (found by
tests/test_api_fuzz.py): PostgreSQL refuses NUL in text and in JSON (a 500 there), SQLite
stored it. No name, email, label or report has a use for one.

A JSON body can carry NUL only as the escape \\u0000 (a raw NUL byte is not JSON); the body's
bytes are searched for one that is not an escaped backslash followed by "u0000". The path and
the query are searched after their percent-decoding.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.exceptions import RequestValidationError

_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
REASON = "text may not contain NUL (\\u0000) characters"


async def refuse_nul_characters(request: Request) -> None:
    """An app-wide dependency: runs before authentication, the database or the body's model."""
    if "\x00" in request.scope["path"]:
        raise _refused(("path",))
    for name, value in request.query_params.multi_items():
        if "\x00" in name or "\x00" in value:
            raise _refused(("query", name.replace("\x00", "")))
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()  # kept by the request: the route's parsing reads it again
        if b"\\u0000" in body and _NUL_ESCAPE.search(body):
            raise _refused(("body",))


def _refused(location: tuple[str, ...]) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "nul_character", "loc": location, "msg": REASON, "input": None}]
    )
