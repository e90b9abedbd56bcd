"""An org's cloud credentials: validated when added, encrypted at rest, never shown again."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from brev import api
from brev.providers import registry
from brev.providers.base import ProviderError, SdkMissing
from brev.providers.registry import ProviderInfo, UnknownProvider
from brev.server.db.models import Instance, ProviderConfig, User
from brev.server.errors import Conflict, InvalidInput, NotFound, ProviderNotInstalled
from brev.server.secrets import Secrets
from brev.server.services import events
from brev.server.services.scope import OrgContext


def kinds() -> list[api.ProviderKind]:
    """Every provider installed on the plane, as its class declares itself."""
    return [_kind(found) for found in registry.all_providers()]


def _kind(found: ProviderInfo) -> api.ProviderKind:
    return api.ProviderKind(
        name=found.name,
        display_name=found.display_name,
        installed=found.installed,
        extra=found.sdk.extra if found.sdk else None,
        config_keys=[
            api.ProviderConfigKey(
                name=key.name,
                help=key.help,
                required=key.required,
                secret=key.secret,
                env=key.env,
                from_file=key.from_file,
                option=key.option,
                local=key.local,
            )
            for key in found.config_keys
        ],
    )


def _checked(provider: str, config: dict[str, str]) -> ProviderInfo:
    """The provider, once `config` has its required keys and no others; InvalidInput if not."""
    try:
        found = registry.info(provider)
    except UnknownProvider as error:
        raise InvalidInput("provider", str(error)) from None
    keys = found.sent_keys()
    if keys:  # a plug-in that declares no keys takes whatever it is given
        declared = {key.name for key in keys}
        unknown = sorted(set(config) - declared)
        if unknown:
            raise InvalidInput(
                "config",
                f"{found.display_name} takes no {', '.join(unknown)}; "
                f"its keys: {', '.join(sorted(declared))}",
            )
    missing = [key.name for key in keys if key.required and not config.get(key.name)]
    if missing:
        raise InvalidInput("config", f"{found.display_name} needs {', '.join(missing)}")
    return found


def add(
    session: Session, ctx: OrgContext, body: api.ProviderConfigAdd, secrets: Secrets
) -> api.ProviderConfig:
    """Check the credentials with the provider itself, then store them sealed."""
    found = _checked(body.provider, body.config)
    try:
        identity = registry.make_provider(body.provider, body.config).validate()
    except SdkMissing as error:
        raise ProviderNotInstalled(error.message) from None
    except ProviderError as error:
        raise InvalidInput(
            "config", f"{found.display_name} rejected these credentials: {error.message}"
        ) from None
    row = session.scalar(
        select(ProviderConfig).where(
            ProviderConfig.org_id == ctx.org.id, ProviderConfig.provider == body.provider
        )
    )
    action = "provider.update" if row else "provider.add"
    if row is None:
        row = ProviderConfig(org_id=ctx.org.id, provider=body.provider)
        session.add(row)
    row.encrypted_config = secrets.seal(dict(body.config))
    row.identity = identity[:255]
    row.created_by_id = ctx.principal.user_id
    session.flush()
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action=action,
        object_type="provider",
        object_id=row.id,
        object_name=body.provider,
        details={"identity": row.identity},
    )
    return _to_api(row, ctx.principal.email)


def list_configs(session: Session, ctx: OrgContext) -> list[api.ProviderConfig]:
    rows = session.execute(
        select(ProviderConfig, User.email)
        .join(User, User.id == ProviderConfig.created_by_id)
        .where(ProviderConfig.org_id == ctx.org.id)
        .order_by(ProviderConfig.provider)
    ).all()
    return [_to_api(row, email) for row, email in rows]


def remove(session: Session, ctx: OrgContext, provider: str) -> None:
    """Refused while instances live there: without credentials nobody could stop them."""
    row = session.scalar(
        select(ProviderConfig).where(
            ProviderConfig.org_id == ctx.org.id, ProviderConfig.provider == provider
        )
    )
    if row is None:
        raise NotFound(f"no {provider} credentials in org '{ctx.org.name}'")
    live = list(
        session.scalars(
            select(Instance.name)
            .where(
                Instance.org_id == ctx.org.id,
                Instance.provider == provider,
                Instance.deleted_at.is_(None),
            )
            .order_by(Instance.name)
        )
    )
    if live:
        shown = ", ".join(live[:5]) + (f" and {len(live) - 5} more" if len(live) > 5 else "")
        raise Conflict(
            f"{len(live)} instance(s) of org '{ctx.org.name}' still use {provider} ({shown}); "
            f"delete them first (`brev delete NAME`)"
        )
    session.delete(row)
    events.record(
        session,
        org_id=ctx.org.id,
        actor_id=ctx.principal.user_id,
        action="provider.remove",
        object_type="provider",
        object_id=row.id,
        object_name=provider,
    )


def configured(session: Session, org_id: str) -> list[str]:
    return list(
        session.scalars(
            select(ProviderConfig.provider)
            .where(ProviderConfig.org_id == org_id)
            .order_by(ProviderConfig.provider)
        )
    )


def load_config(session: Session, org_id: str, provider: str, secrets: Secrets) -> dict[str, Any]:
    row = session.scalar(
        select(ProviderConfig).where(
            ProviderConfig.org_id == org_id, ProviderConfig.provider == provider
        )
    )
    if row is None:
        raise NotFound(
            f"no {provider} credentials for this org: run `brev provider add {provider}`"
        )
    return secrets.open(row.encrypted_config)


def _to_api(row: ProviderConfig, added_by: str) -> api.ProviderConfig:
    return api.ProviderConfig(
        provider=row.provider, identity=row.identity, added_by=added_by, created_at=row.created_at
    )
