"""The audit log: /orgs/{org}/events, and the events shown with an instance or node."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from brev.api.base import _Model


class Event(_Model):
    id: int
    created_at: datetime
    actor: str | None = Field(description="email of the user, or null for the control plane")
    action: str
    object_type: str
    object_name: str | None
    details: dict[str, object]
