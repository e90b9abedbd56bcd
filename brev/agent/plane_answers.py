"""Reading the plane's error answers, for the agent's two connections to it (the reports in
brev.agent.uplink, the assignments long-poll in brev.agent.watch). Standard library only."""

from __future__ import annotations

import json


def error_code(body: bytes) -> str | None:
    """`code` of the plane's error body, {"error": {"code", "message", "fields"}}."""
    try:
        detail = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    code = detail.get("code") if isinstance(detail, dict) else None
    return code if isinstance(code, str) else None


def describe(reason: object) -> str:
    """A failure in a few words for the log: the exception's type and message."""
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return str(reason)
