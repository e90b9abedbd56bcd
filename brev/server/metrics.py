"""Prometheus metrics at /metrics: request counts and latencies, instances by status."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brev import __version__
from brev.server.db.models import Instance

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _InstancesByStatus(Collector):
    """Read at scrape time, so every replica reports the same truth: the database's."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Any]:
        gauge = GaugeMetricFamily(
            "brev_instances", "Instances that are not deleted, by status", labels=["status"]
        )
        with self._sessions() as session:
            rows = session.execute(
                select(Instance.status, func.count())
                .where(Instance.deleted_at.is_(None))
                .group_by(Instance.status)
            ).all()
        for status, count in rows:
            gauge.add_metric([status], count)
        yield gauge
        yield InfoMetricFamily(
            "brev_build", "Version of this control plane", {"version": __version__}
        )


class Metrics:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "brev_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "brev_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(_InstancesByStatus(sessions))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def route_template(scope: Scope) -> str:
    """`/api/v1/orgs/{org}/instances` for `/api/v1/orgs/acme/instances`: one series per route,
    however many names. The matched route knows its template only below the prefix of the
    router that included it, so the prefix comes from the request path."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return "unmatched"
    depth = template.count("/")
    path: str = scope["path"]
    prefix = path.rsplit("/", depth)[0] if depth else path
    return prefix + template


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or body copy)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started
            )
