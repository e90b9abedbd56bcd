from __future__ import annotations

from fastapi import APIRouter, Request, Response

from brev import api
from brev.server.deps import Caller, DbSession, InOrg, admin_only
from brev.server.openapi_errors import USER_ROUTES, WITH_BODY, conflict, errors
from brev.server.services import provider_configs

router = APIRouter(tags=["providers"], responses=USER_ROUTES)


@router.get("/providers")
def provider_kinds(caller: Caller) -> list[api.ProviderKind]:
    """The providers installed on the plane, built in and plug-ins, with their config keys."""
    return provider_configs.kinds()


@router.get("/orgs/{org}/providers", responses=errors(404))
def list_providers(session: DbSession, ctx: InOrg) -> list[api.ProviderConfig]:
    return provider_configs.list_configs(session, ctx)


@router.post(
    "/orgs/{org}/providers",
    status_code=201,
    dependencies=[admin_only("adding provider credentials")],
    responses={**WITH_BODY, **errors(404)},
)
def add_provider(
    request: Request, session: DbSession, ctx: InOrg, body: api.ProviderConfigAdd
) -> api.ProviderConfig:
    return provider_configs.add(session, ctx, body, request.app.state.secrets)


@router.delete(
    "/orgs/{org}/providers/{provider}",
    status_code=204,
    dependencies=[admin_only("removing provider credentials")],
    responses={**errors(404), **conflict("instances still run on these credentials")},
)
def remove_provider(session: DbSession, ctx: InOrg, provider: str) -> Response:
    provider_configs.remove(session, ctx, provider)
    return Response(status_code=204)
