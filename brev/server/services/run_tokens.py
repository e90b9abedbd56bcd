"""Run-scoped tokens (`brev token create --scope run`): what a CI job's token may do.

Such a token reads offers and plans, creates instances within its limits, and acts on the
instances it created only: list, get, delete, renew the lease, set the TTL, SSH certificates.
Other instances do not exist for it (404, absent from lists: their names are not disclosed);
every other route is 403. The route check is made once, for every request, by
`deps.get_principal`; ownership by the queries that find instances (`visible`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement

from brev import api
from brev.catalog.gpus import GpuSpec
from brev.duration import format_duration_exact
from brev.server.auth import Principal
from brev.server.db.models import Instance
from brev.server.errors import Forbidden, TokenLimit
from brev.server.services.scope import OrgContext

RUN = api.TokenScope.RUN.value

# (method, path below /api/v1): everything else is refused to a run token.
ALLOWED_ROUTES = frozenset(
    {
        ("GET", "/whoami"),
        ("GET", "/orgs/{org}/offers"),
        ("POST", "/orgs/{org}/instances/plan"),
        ("POST", "/orgs/{org}/instances"),
        ("GET", "/orgs/{org}/instances"),
        ("GET", "/orgs/{org}/instances/{name}"),
        ("DELETE", "/orgs/{org}/instances/{name}"),
        ("POST", "/orgs/{org}/instances/{name}/lease"),
        ("DELETE", "/orgs/{org}/instances/{name}/lease"),
        ("PUT", "/orgs/{org}/instances/{name}/ttl"),
        ("POST", "/orgs/{org}/ssh/certificate"),
    }
)
MAY = (
    "read offers and plans, create instances, and list, get, delete, renew the lease of, "
    "set the TTL of and SSH to the instances it created"
)


def is_run(principal: Principal) -> bool:
    return principal.token_scope == RUN


def check_route(principal: Principal, method: str, path: str) -> None:
    """Forbidden unless a run token may call this route (`path` as declared, below /api/v1)."""
    if is_run(principal) and (method, path) not in ALLOWED_ROUTES:
        raise Forbidden(
            f"token '{principal.token_name}' has scope 'run': it may not {method} {path}; "
            f"it may {MAY}"
        )


def visible(ctx: OrgContext) -> list[ColumnElement[bool]]:
    """The conditions on Instance rows the caller may see: the org's; for a run token, only
    those it created."""
    conditions = [Instance.org_id == ctx.org.id]
    if is_run(ctx.principal):
        conditions.append(Instance.created_by_token_id == ctx.principal.token_id)
    return conditions


def limit_create(
    ctx: OrgContext, body: api.InstanceCreate, default_lease_seconds: int
) -> api.InstanceCreate:
    """The create a run token makes of `body`: always a lease (the body's or the plane's
    default) and a TTL within the token's max_ttl (that max when the body has none).
    Price and GPU limits apply to the plan (`limit_plan`)."""
    principal = ctx.principal
    if not is_run(principal):
        return body
    update: dict[str, int] = {}
    ceiling = principal.max_ttl_seconds
    if ceiling is not None:
        if body.ttl_seconds is None:
            update["ttl_seconds"] = ceiling
        elif body.ttl_seconds > ceiling:
            raise TokenLimit(
                "max_ttl_seconds",
                f"ttl {format_duration_exact(body.ttl_seconds)} is over the max_ttl_seconds of "
                f"token '{principal.token_name}' ({format_duration_exact(ceiling)}): "
                f"ask for {format_duration_exact(ceiling)} or less",
            )
    if body.run_lease_seconds is None:
        update["run_lease_seconds"] = default_lease_seconds
    return body.model_copy(update=update) if update else body


def check_max_price(ctx: OrgContext, body: api.InstanceCreate) -> None:
    principal = ctx.principal
    ceiling = principal.max_price_per_hour
    if is_run(principal) and ceiling is not None and (body.max_price or 0) > ceiling:
        raise TokenLimit(
            "max_price_per_hour",
            f"max_price ${body.max_price:.2f}/h is over the max_price_per_hour of token "
            f"'{principal.token_name}' (${ceiling:.2f}/h)",
        )


def limit_plan(
    ctx: OrgContext, spec: GpuSpec, placements: list[api.Placement]
) -> list[api.Placement]:
    """The placements within the token's GPU and price limits; TokenLimit, naming the limit,
    when there were some and none is within them."""
    principal = ctx.principal
    if not is_run(principal):
        return placements
    name = principal.token_name
    if principal.max_gpus is not None:
        if spec.count is not None and spec.count > principal.max_gpus:
            raise _over_gpus(name, spec, spec.count, principal.max_gpus)
        kept = [p for p in placements if p.gpu_count <= principal.max_gpus]
        if placements and not kept:
            fewest = min(p.gpu_count for p in placements)
            raise _over_gpus(name, spec, fewest, principal.max_gpus)
        placements = kept
    ceiling = principal.max_price_per_hour
    if ceiling is not None:
        kept = [p for p in placements if (p.price_per_hour or 0) <= ceiling]
        if placements and not kept:
            cheapest = min(p.price_per_hour or 0 for p in placements)
            raise TokenLimit(
                "max_price_per_hour",
                f"every offer for {spec} costs more than the max_price_per_hour of token "
                f"'{name}' (${ceiling:.2f}/h): the cheapest is ${cheapest:.2f}/h",
            )
        placements = kept
    return placements


def _over_gpus(token: str, spec: GpuSpec, count: float, ceiling: int) -> TokenLimit:
    return TokenLimit(
        "max_gpus",
        f"{spec} needs {count:g} GPUs: more than the max_gpus of token '{token}' ({ceiling})",
    )


def check_expiry(ctx: OrgContext, instance: Instance, expires_at: datetime | None) -> None:
    """A run token's instances expire within its max_ttl of their creation: a TTL set later
    may not push that back, nor turn it off."""
    principal = ctx.principal
    ceiling = principal.max_ttl_seconds
    if not is_run(principal) or ceiling is None:
        return
    latest = instance.created_at + timedelta(seconds=ceiling)
    if expires_at is None or expires_at > latest:
        raise TokenLimit(
            "max_ttl_seconds",
            f"token '{principal.token_name}' has a max_ttl_seconds of "
            f"{format_duration_exact(ceiling)}: '{instance.name}' must expire by "
            f"{latest:%Y-%m-%d %H:%M:%S} UTC, {format_duration_exact(ceiling)} after its "
            f"creation",
        )
