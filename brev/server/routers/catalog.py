"""The offer catalog's upkeep: `POST /orgs/{org}/catalog/refresh`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from brev import api
from brev.server.db.engine import transaction
from brev.server.deps import UntiedInOrg, admin_only
from brev.server.openapi_errors import ORG_ROUTES, conflict
from brev.server.services import catalog_refresh

router = APIRouter(tags=["catalog"], responses=ORG_ROUTES)


@router.post(
    "/orgs/{org}/catalog/refresh",
    dependencies=[admin_only("refreshing the catalog", untied=True)],
    responses={
        403: {"model": api.ErrorBody, "description": "the caller is not an admin of the org"},
        **conflict("a refresh is already running"),
    },
)
def refresh_catalog(request: Request, ctx: UntiedInOrg) -> list[api.CatalogRefresh]:
    """Refresh the offer catalog from the APIs of the providers this org has credentials for
    (admins only). One result per provider; an empty list when the org has none. A region
    whose calls fail is skipped and named, and keeps its offers; nothing changes on failure."""
    state = request.app.state
    # UntiedInOrg, not InOrg: the request's transaction would stay open while clouds answer.
    with transaction(state.sessions) as session:
        job = catalog_refresh.prepare(session, ctx, state.secrets)
    results = catalog_refresh.run(job, state.settings.home / "catalog")
    with transaction(state.sessions) as session:
        catalog_refresh.record(session, job, results)
    return results
