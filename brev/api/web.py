"""The dashboard's browser sessions: bodies of /web/sessions and /web/login-links."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, model_validator

from brev.api.base import _Model


class WebSessionCreate(_Model):
    """Sign in with a pasted token, or with the code of a login link (`brev dashboard`)."""

    token: str | None = Field(default=None, max_length=200)
    login_code: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _exactly_one(self) -> WebSessionCreate:
        if (self.token is None) == (self.login_code is None):
            raise ValueError("send exactly one of 'token' and 'login_code'")
        return self


class WebSession(_Model):
    email: str
    csrf_token: str = Field(description="send it back as the X-CSRF-Token header on writes")
    expires_at: datetime


class LoginLink(_Model):
    code: str = Field(description="single use; the page exchanges it for a session")
    url: str = Field(description="the dashboard's address with the code in its fragment")
    expires_at: datetime
