"""Providers: the kinds a plane has (GET /providers) and an org's credentials for them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from brev.api.base import _Model


class ProviderConfigAdd(_Model):
    provider: Annotated[str, Field(min_length=1, max_length=32)]
    config: dict[str, str] = Field(
        description="the provider's config keys, as GET /providers lists them for each provider"
    )


class ProviderConfigKey(_Model):
    """One key of a provider's config, as the provider's class declares it."""

    name: str
    help: str
    required: bool
    secret: bool = Field(description="never shown back; a password field in the dashboard")
    env: str | None = Field(description="the environment variable `brev provider add` reads")
    from_file: bool = Field(description="the CLI option names a file whose text is the value")
    option: str = Field(description="the `brev provider add` option, e.g. --state-dir")
    local: bool = Field(description="read only by the CLI's discovery (an AWS profile), not sent")


class ProviderKind(_Model):
    """A provider installed on the plane (built in or a plug-in), whether or not configured."""

    name: str
    display_name: str
    installed: bool = Field(description="false: its SDK is missing on the plane (see `extra`)")
    extra: str | None = Field(description="the brev extra that installs its SDK, e.g. aws")
    config_keys: list[ProviderConfigKey]


class ProviderConfig(_Model):
    """An org's provider credentials, as the API shows them: who they are, never what."""

    provider: str
    identity: str = Field(description="who the credentials act as, e.g. 'account 1234 as ...'")
    added_by: str
    created_at: datetime
