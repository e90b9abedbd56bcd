"""Browser sessions of the dashboard and the login links that start them.

A session stands for the token it was started with (pasted on the sign-in page, or the CLI's
token behind `brev dashboard`): it acts with that token's rights, and ends when the token is
revoked or expires, when the user signs out, or after SESSION_LIFETIME. The browser holds the
session's secret in an HttpOnly cookie, so no script, and no injected one, can read it.

A login link carries a code in the URL's fragment (never sent to a server, so never in an
access log); the page exchanges it once, within LINK_LIFETIME, and drops it from its history.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from brev.api.web import LoginLink as LoginLinkBody
from brev.api.web import WebSession as WebSessionBody
from brev.server.auth import Principal, authenticate, check, hash_secret
from brev.server.db.models import ApiToken, LoginLink, User, WebSession, utcnow
from brev.server.errors import CsrfFailed, Forbidden, Unauthenticated
from brev.server.services import run_tokens

SESSION_LIFETIME = timedelta(hours=12)
LINK_LIFETIME = timedelta(minutes=2)
# Rows past their end are deleted when a new one is made, after this much time for forensics.
KEEP_ENDED = timedelta(days=1)


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    csrf_token: str
    expires_at: datetime

    def describe(self) -> WebSessionBody:
        return WebSessionBody(
            email=self.principal.email, csrf_token=self.csrf_token, expires_at=self.expires_at
        )


def start_with_token(
    session: Session, secret: str, now: datetime | None = None
) -> tuple[str, WebSessionBody]:
    """A new session for a pasted token: (the cookie's secret, what the page gets)."""
    principal = authenticate(session, secret, now)
    return _start(session, principal, now or utcnow())


def start_with_code(
    session: Session, code: str, now: datetime | None = None
) -> tuple[str, WebSessionBody]:
    """A new session for a login link's code, which is used up by this, whatever follows."""
    now = now or utcnow()
    used = session.execute(
        update(LoginLink)
        .where(
            LoginLink.code_hash == hash_secret(code),
            LoginLink.used_at.is_(None),
            LoginLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(LoginLink.token_id)
    ).scalar_one_or_none()
    if used is None:
        raise Unauthenticated(
            "this login link was used already or expired; run 'brev dashboard' for a new one"
        )
    token, user = _token_and_user(session, used)
    return _start(session, check(token, user, now), now)


def create_login_link(session: Session, principal: Principal, base_url: str) -> LoginLinkBody:
    _may_sign_in(principal)
    now = utcnow()
    _forget_old(session, now)
    code = secrets.token_urlsafe(32)
    link = LoginLink(
        token_id=principal.token_id, code_hash=hash_secret(code), expires_at=now + LINK_LIFETIME
    )
    session.add(link)
    session.flush()
    url = f"{base_url.rstrip('/')}/#login={code}"
    return LoginLinkBody(code=code, url=url, expires_at=link.expires_at)


def resume(session: Session, secret: str, now: datetime | None = None) -> SignedIn:
    """The caller a session cookie stands for; Unauthenticated when it may not act (any more)."""
    now = now or utcnow()
    row = session.execute(
        select(WebSession, ApiToken, User)
        .join(ApiToken, ApiToken.id == WebSession.token_id)
        .join(User, User.id == ApiToken.user_id)
        .where(WebSession.secret_hash == hash_secret(secret))
    ).one_or_none()
    if row is None:
        raise Unauthenticated("not signed in, or the session was ended; sign in again")
    web, token, user = row
    if web.ended_at is not None:
        raise Unauthenticated("this session was signed out; sign in again")
    if web.expires_at <= now:
        raise Unauthenticated("this session expired; sign in again")
    return SignedIn(check(token, user, now), web.csrf_token, web.expires_at)


def end(session: Session, secret: str) -> None:
    """Sign out: the session can never be used again, whoever holds its cookie."""
    session.execute(
        update(WebSession)
        .where(WebSession.secret_hash == hash_secret(secret), WebSession.ended_at.is_(None))
        .values(ended_at=utcnow())
    )


def check_csrf(signed_in: SignedIn, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, signed_in.csrf_token):
        raise CsrfFailed(
            "this request changes something and came without the page's X-CSRF-Token header; "
            "reload the dashboard and try again"
        )


def _start(session: Session, principal: Principal, now: datetime) -> tuple[str, WebSessionBody]:
    _may_sign_in(principal)
    _forget_old(session, now)
    secret = secrets.token_urlsafe(32)
    web = WebSession(
        token_id=principal.token_id,
        secret_hash=hash_secret(secret),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    session.add(web)
    session.flush()
    body = WebSessionBody(
        email=principal.email, csrf_token=web.csrf_token, expires_at=web.expires_at
    )
    return secret, body


def _may_sign_in(principal: Principal) -> None:
    if principal.token_kind != "user":  # noqa: S105
        raise Forbidden("an agent token cannot sign in to the dashboard")
    if run_tokens.is_run(principal):
        raise Forbidden(
            f"token '{principal.token_name}' has scope 'run' (for CI jobs); "
            "sign in with a token of your own ('brev token create')"
        )


def _token_and_user(session: Session, token_id: str) -> tuple[ApiToken, User]:
    row = session.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.id == token_id)
    ).one()
    return row[0], row[1]


def _forget_old(session: Session, now: datetime) -> None:
    cutoff = now - KEEP_ENDED
    session.execute(delete(WebSession).where(WebSession.expires_at < cutoff))
    session.execute(delete(LoginLink).where(LoginLink.expires_at < cutoff))
