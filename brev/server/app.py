"""The control plane's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from brev import __version__, api
from brev.catalog.offers import use_overlay
from brev.providers.registry import make_provider
from brev.server.admission import AdmissionLimit
from brev.server.body_limit import BodyLimit
from brev.server.db import outage
from brev.server.db.engine import make_engine, make_sessionmaker
from brev.server.errors import InvalidInput, ServiceError, TokenLimit
from brev.server.ingest import WRITERS, ReportIngest
from brev.server.metrics import Metrics, MetricsMiddleware
from brev.server.nul_guard import refuse_nul_characters
from brev.server.openapi_errors import EVERY_ROUTE
from brev.server.reconciler.boot import BootCheck
from brev.server.reconciler.loop import Reconciler
from brev.server.reconciler.snapshot import Timing
from brev.server.routers import (
    agents,
    catalog,
    events,
    fleet,
    instances,
    meta,
    nodes,
    offers,
    orgs,
    providers,
    ssh,
    tokens,
    web_sessions,
)
from brev.server.secrets import Secrets
from brev.server.settings import ServerSettings
from brev.server.unhandled import UnhandledErrors, error_log, internal_error
from brev.server.web import add_dashboard

# A validation error names at most this many fields, then counts the rest.
MAX_REPORTED_ERRORS = 20

# Fewer than the 40 threads FastAPI runs sync code on, and than the connection pool.
ADMITTED_REQUESTS = 20


def create_app(settings: ServerSettings) -> FastAPI:
    engine = make_engine(settings.database_url)
    app = FastAPI(
        lifespan=_lifespan,
        title="brev control plane",
        version=__version__,
        description="One place where a team gets GPUs. "
        "Authenticate with 'Authorization: Bearer <token>'.",
        responses=EVERY_ROUTE,
        dependencies=[Depends(refuse_nul_characters)],
    )
    app.state.settings = settings
    app.state.engine = engine
    # Hooked to the engine's new connections from the start: how an outage's end is seen.
    app.state.database = outage.reachability(engine)
    app.state.unhandled = error_log()
    app.state.sessions = make_sessionmaker(engine)
    app.state.metrics = Metrics(app.state.sessions)
    app.state.secrets = Secrets.for_home(settings.home)
    writers = settings.report_writers or WRITERS.get(engine.dialect.name, 1)
    app.state.ingest = ReportIngest(app.state.sessions, writers)
    use_overlay(settings.home / "catalog")  # offers refreshed by `brev catalog refresh`
    app.state.reconciler = Reconciler(
        app.state.sessions,
        app.state.secrets,
        make_provider,
        interval=settings.reconcile_interval,
        lease=timedelta(seconds=settings.reconcile_lease),
        workers=settings.reconcile_workers,
        timing=Timing(
            poll=timedelta(seconds=settings.reconcile_poll),
            boot=BootCheck(
                probe=settings.boot_probe, timeout=timedelta(seconds=settings.boot_timeout)
            ),
        ),
        sweep_every=timedelta(seconds=settings.sweep_interval),
        public_url=settings.public_url,
        replica=settings.replica_id or None,
        dead_after=timedelta(seconds=settings.replica_timeout),
    )

    app.include_router(meta.router)
    # First: the agents' report route is the busiest by far, and FastAPI tries routers in
    # order (each try costs; at 1,000 agents the match alone was a third of a report's time).
    for router in (
        agents.router,
        orgs.router,
        tokens.router,
        instances.router,
        offers.router,
        catalog.router,
        providers.router,
        events.router,
        nodes.router,
        ssh.router,
        web_sessions.router,
        fleet.router,
    ):
        app.include_router(router, prefix=api.API_PREFIX)
    _add_error_handlers(app)
    add_dashboard(app)
    # Outermost after metrics: queued requests wait here, outside the thread pool.
    app.add_middleware(AdmissionLimit, limit=ADMITTED_REQUESTS)
    # Outside the admission limit: an oversized body is refused before it takes a slot.
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        per_path={f"{api.API_PREFIX}/agent/reports": settings.max_report_body_bytes},
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs while the server serves: the reconciler works in the background meanwhile."""
    settings: ServerSettings = app.state.settings
    if settings.reconcile:
        app.state.reconciler.start()
    try:
        yield
    finally:
        app.state.reconciler.stop()
        app.state.ingest.stop()
        app.state.unhandled.flush()


def _error(
    status: int, code: str, message: str, fields: list[api.FieldError] | None = None
) -> JSONResponse:
    body = api.ErrorBody(error=api.ErrorDetail(code=code, message=message, fields=fields or []))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _field_name(location: tuple[int | str, ...]) -> str:
    # ("body", "name") -> "name"; ("query", "limit") -> "limit"; nested -> "a.b.0"
    parts = [str(p) for p in location[1:]] or [str(p) for p in location]
    return ".".join(parts)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        if isinstance(exc, InvalidInput):
            # The same shape as a request validation error: "field: reason", and the field.
            fields = [api.FieldError(field=exc.field, reason=exc.message)]
            return _error(exc.status_code, exc.code, f"{exc.field}: {exc.message}", fields)
        if isinstance(exc, TokenLimit):  # the limit as a field too, for scripts to act on
            fields = [api.FieldError(field=exc.limit, reason=exc.message)]
            return _error(exc.status_code, exc.code, exc.message, fields)
        return _error(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The first few errors and a count: a list of a million wrong items made an error
        # body of 643 MB (each item's error, twice).
        errors = exc.errors()
        not_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if not_json is not None:  # not a request with bad values: no request at all
            reason = (not_json.get("ctx") or {}).get("error", "malformed")
            where = not_json["loc"][-1]
            return _error(
                400, "invalid_json", f"the request body is not JSON: {reason} at character {where}"
            )
        fields = [
            api.FieldError(field=_field_name(tuple(e["loc"])), reason=e["msg"][:200])
            for e in errors[:MAX_REPORTED_ERRORS]
        ]
        message = "; ".join(f"{f.field}: {f.reason}" for f in fields)
        if len(errors) > MAX_REPORTED_ERRORS:
            message += f"; and {len(errors) - MAX_REPORTED_ERRORS:,} more errors"
        return _error(422, "validation_error", message, fields)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's for a body it cannot decode (not UTF-8)
            return _error(400, "invalid_json", "the request body is not JSON: not UTF-8 text")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    app.add_exception_handler(DBAPIError, outage.handle)
    # Innermost of the middlewares: answers and logs, once, what no handler above took.
    app.add_middleware(UnhandledErrors, errors=app.state.unhandled)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        # Only what fails in a middleware outside UnhandledErrors reaches this: Starlette
        # raises it on after this answer, and uvicorn logs it (once: not here as well).
        return internal_error()
