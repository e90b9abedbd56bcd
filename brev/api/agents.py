"""Agents: their tokens, their reports (/agent/reports) and what the plane answers them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from brev.api.base import _Model


class AgentToken(_Model):
    instance: str
    token: str = Field(description="for this instance's agent only; shown once, never again")


class AgentReportIn(_Model):
    seq: int = Field(ge=1, description="increasing per agent; a seq already seen is dropped")
    report: dict[str, Any] = Field(description="brev.agent.report.AgentReport as JSON")


class AgentReports(_Model):
    reports: list[AgentReportIn] = Field(max_length=1000, description="oldest first")
    interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="how often the agent reports: 3 missed = unhealthy"
    )


class Assignment(_Model):
    """An instance a node's agent keeps a working directory for, and the GPUs its sessions see."""

    instance: str
    gpu_indices: list[int] = Field(description="empty: no GPU (CPU instance, or stopped)")
    gpu_uuids: list[str]
    principal: str | None = Field(
        None, description="the SSH certificate principal that enters it (brev-enter NAME)"
    )
    active: bool = Field(True, description="false while stopped: the directory stays, no login")


class AgentReportsAccepted(_Model):
    accepted: int = Field(description="reports new to the plane; re-sent ones are not counted")
    last_seq: int
    assignments: list[Assignment] | None = Field(
        None, description="a node's agent only: every instance it hosts; null for instances"
    )
    node_principals: list[str] | None = Field(
        None,
        description="a node's agent only: principals that log in to the node itself "
        "(org admins, and the plane for installs)",
    )
    assignments_version: int | None = Field(
        None,
        description="a node's agent only: the version these assignments are at least as new "
        "as (an agent drops an answer older than what it applied; see GET /agent/assignments)",
    )
