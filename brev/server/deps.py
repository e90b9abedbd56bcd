"""FastAPI dependencies: a transaction per request, the caller, the caller's org, admin-only
routes, agents."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from brev import api
from brev.server.auth import Principal, authenticate
from brev.server.errors import Forbidden
from brev.server.services import run_tokens, web_sessions
from brev.server.services.scope import OrgContext, org_context


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session, session.begin():
        yield session


# scope="function": commit when the handler returns, before the response is sent. With the
# default scope FastAPI commits after sending, so a client could be told 201 and then not
# find what it created (or be told 201 for a write whose commit failed).
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


SESSION_COOKIE = "brev_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def signed_in_by_cookie(request: Request, session: Session) -> web_sessions.SignedIn | None:
    """The dashboard session the request's cookie stands for; None without a cookie."""
    secret = request.cookies.get(SESSION_COOKIE)
    return web_sessions.resume(session, secret) if secret else None


def _caller(request: Request, session: Session) -> Principal:
    """By the Bearer token when there is one (the CLI, CI, scripts), else by the dashboard's
    session cookie, whose writes must also carry the page's CSRF token."""
    secret = bearer(request)
    signed_in = None if secret is not None else signed_in_by_cookie(request, session)
    if signed_in is None:
        return authenticate(session, secret)
    if request.method not in SAFE_METHODS:
        web_sessions.check_csrf(signed_in, request.headers.get("x-csrf-token"))
    return signed_in.principal


def get_principal(request: Request, session: DbSession) -> Principal:
    principal = _caller(request, session)
    if principal.token_kind != "user":  # noqa: S105
        raise Forbidden("an agent token can only report for its own instance or node")
    # Every user route comes through here, so a run token's limits on routes live in one place.
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path).removeprefix(api.API_PREFIX)
    run_tokens.check_route(principal, request.method, path)
    return principal


Caller = Annotated[Principal, Depends(get_principal)]


def get_org_context_untied(
    request: Request, org: Annotated[str, Path(description="org name")]
) -> OrgContext:
    """The caller's org, checked in a transaction of its own: for handlers that talk to
    something slow (a machine over SSH) and must not hold a transaction, and so SQLite's write
    lock, while they wait."""
    with request.app.state.sessions() as session, session.begin():
        return org_context(session, get_principal(request, session), org)


UntiedInOrg = Annotated[OrgContext, Depends(get_org_context_untied)]


def get_org_context(
    session: DbSession,
    principal: Caller,
    org: Annotated[str, Path(description="org name")],
) -> OrgContext:
    return org_context(session, principal, org)


InOrg = Annotated[OrgContext, Depends(get_org_context)]


def admin_only(action: str, *, untied: bool = False) -> Any:
    """For a route's `dependencies`: 403 "`action` needs the admin role in org ..." unless the
    caller is an admin of the path's org. `untied`: the route takes UntiedInOrg (FastAPI
    caches a dependency per request, so the org is looked up once either way)."""

    def in_org(ctx: InOrg) -> None:
        ctx.require_admin(action)

    def in_org_untied(ctx: UntiedInOrg) -> None:
        ctx.require_admin(action)

    return Depends(in_org_untied if untied else in_org)


def get_agent(request: Request, session: DbSession) -> Principal:
    principal = authenticate(session, bearer(request))
    scoped = principal.token_instance_id or principal.token_node_id
    if principal.token_kind != "agent" or scoped is None:  # noqa: S105
        raise Forbidden("only the agent token of an instance or node may report")
    return principal


Agent = Annotated[Principal, Depends(get_agent)]
