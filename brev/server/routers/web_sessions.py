"""The dashboard's sign-in: sessions in an HttpOnly cookie, and login links for `brev dashboard`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from brev.api.web import LoginLink, WebSession, WebSessionCreate
from brev.server.deps import SESSION_COOKIE, Caller, DbSession, signed_in_by_cookie
from brev.server.errors import Unauthenticated
from brev.server.openapi_errors import USER_ROUTES, WITH_BODY
from brev.server.services import web_sessions
from brev.server.settings import ServerSettings

router = APIRouter(tags=["dashboard sessions"], responses=USER_ROUTES)


@router.post("/web/sessions", status_code=201, responses=WITH_BODY)
def sign_in(
    request: Request, response: Response, session: DbSession, body: WebSessionCreate
) -> WebSession:
    """FastAPI reads a JSON body only under a JSON content type, which a cross-site form
    cannot send (that takes CORS, never granted here): no page elsewhere can sign a visitor
    in as someone else."""
    if body.token is not None:
        secret, answer = web_sessions.start_with_token(session, body.token)
    else:
        assert body.login_code is not None
        secret, answer = web_sessions.start_with_code(session, body.login_code)
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(web_sessions.SESSION_LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_is_https(request),
    )
    return answer


@router.get("/web/sessions/current")
def current_session(request: Request, session: DbSession) -> WebSession:
    signed_in = signed_in_by_cookie(request, session)
    if signed_in is None:
        raise Unauthenticated("not signed in")
    return signed_in.describe()


@router.delete("/web/sessions/current", status_code=204)
def sign_out(request: Request, session: DbSession) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        try:
            signed_in = web_sessions.resume(session, secret)
        except Unauthenticated:
            pass  # ended or expired already: clearing the cookie is all there is to do
        else:
            web_sessions.check_csrf(signed_in, request.headers.get("x-csrf-token"))
            web_sessions.end(session, secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/web/login-links", status_code=201)
def create_login_link(request: Request, session: DbSession, caller: Caller) -> LoginLink:
    settings: ServerSettings = request.app.state.settings
    base_url = settings.public_url or str(request.base_url)
    return web_sessions.create_login_link(session, caller, base_url)


def _is_https(request: Request) -> bool:
    settings: ServerSettings = request.app.state.settings
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")
