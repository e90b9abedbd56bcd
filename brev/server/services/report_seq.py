"""Agents number their reports (brev.agent.uplink) and re-send a batch whose answer was lost;
the plane keeps the newest number it applied per agent (`last_report_seq` of the instance or
node) and applies each number once."""

from __future__ import annotations

from collections.abc import Iterable

from brev import api


def unseen(reports: Iterable[api.AgentReportIn], last_seq: int) -> list[api.AgentReportIn]:
    """The reports numbered above `last_seq`, oldest first, each number once: a re-sent one,
    or a number twice in one batch, is dropped. The caller sets `last_report_seq` to the last
    one's number as it applies them."""
    fresh: list[api.AgentReportIn] = []
    for item in sorted(reports, key=lambda r: r.seq):
        if item.seq > last_seq:
            fresh.append(item)
            last_seq = item.seq
    return fresh
