from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter

from brev import api
from brev.server.conditional import json_or_not_modified
from brev.server.deps import DbSession, InOrg
from brev.server.openapi_errors import NOT_MODIFIED, ORG_ROUTES, WITH_BODY, conflict, replayed
from brev.server.services import (
    gpu_metrics,
    instance_actions,
    instance_lifetime,
    instances,
    provisioning,
)

router = APIRouter(tags=["instances"], responses=ORG_ROUTES)
_INSTANCES = TypeAdapter(list[api.Instance])


@router.get("/orgs/{org}/instances", response_model=list[api.Instance], responses=NOT_MODIFIED)
def list_instances(request: Request, session: DbSession, ctx: InOrg) -> Response:
    """The org's live instances. Sends an ETag; answers If-None-Match with 304."""
    return json_or_not_modified(request, _INSTANCES, instances.list_instances(session, ctx))


@router.post(
    "/orgs/{org}/instances/plan",
    responses={**WITH_BODY, **conflict("no capacity for the GPUs asked for")},
)
def plan_instance(session: DbSession, ctx: InOrg, body: api.InstanceCreate) -> api.InstancePlan:
    """What `create` would try, in order, without creating anything (`brev create --dry-run`)."""
    return provisioning.plan(session, ctx, body)


@router.post(
    "/orgs/{org}/instances",
    status_code=201,
    responses={
        **replayed(api.InstanceDetail),
        **WITH_BODY,
        **conflict(
            "the name is taken, the idempotency key was used for another request, "
            "or no capacity (`no_capacity`)"
        ),
    },
)
def create_instance(
    request: Request, session: DbSession, ctx: InOrg, body: api.InstanceCreate, response: Response
) -> api.InstanceDetail:
    """201 and a pending instance; 200 and the first one when the idempotency key was seen."""
    lease = request.app.state.settings.run_lease_seconds
    detail, created = provisioning.create(session, ctx, body, default_lease_seconds=lease)
    if not created:
        response.status_code = 200
    return detail


@router.get("/orgs/{org}/instances/{name}")
def get_instance(session: DbSession, ctx: InOrg, name: str) -> api.InstanceDetail:
    return instances.get_detail(session, ctx, name)


@router.get("/orgs/{org}/instances/{name}/metrics")
def instance_metrics(
    session: DbSession, ctx: InOrg, name: str, since: datetime | None = None
) -> list[api.GpuSeries]:
    """GPU metrics per GPU since `since` (default: an hour ago): raw samples for the last hour,
    one-minute aggregates before that (kept seven days)."""
    return gpu_metrics.series(session, ctx, name, since)


@router.post("/orgs/{org}/instances/{name}/start", responses=conflict("being deleted, or failed"))
def start_instance(session: DbSession, ctx: InOrg, name: str) -> api.InstanceDetail:
    return instance_actions.start(session, ctx, name)


@router.post(
    "/orgs/{org}/instances/{name}/stop",
    responses=conflict("being provisioned or deleted, or failed"),
)
def stop_instance(session: DbSession, ctx: InOrg, name: str) -> api.InstanceDetail:
    return instance_actions.stop(session, ctx, name)


@router.put("/orgs/{org}/instances/{name}/autostop", responses=WITH_BODY)
def set_autostop(
    session: DbSession, ctx: InOrg, name: str, body: api.Autostop
) -> api.InstanceDetail:
    """Stop (or delete) the instance once it stayed idle this long; `seconds: null` turns it off."""
    return instance_actions.set_autostop(session, ctx, name, body)


@router.put(
    "/orgs/{org}/instances/{name}/ttl",
    responses={**WITH_BODY, **conflict("being deleted")},
)
def set_ttl(session: DbSession, ctx: InOrg, name: str, body: api.Ttl) -> api.InstanceDetail:
    """Delete the instance this many seconds from now; `seconds: null` turns the TTL off."""
    return instance_lifetime.set_ttl(session, ctx, name, body)


@router.post(
    "/orgs/{org}/instances/{name}/lease",
    responses=conflict("no lease, or being deleted"),
)
def renew_lease(session: DbSession, ctx: InOrg, name: str) -> api.Lease:
    """`brev run` keeps its instance: the lease runs its length again from now (409 for an
    instance without one, or one being deleted)."""
    return instance_lifetime.renew_lease(session, ctx, name)


@router.delete("/orgs/{org}/instances/{name}/lease", responses=conflict("being deleted"))
def release_lease(session: DbSession, ctx: InOrg, name: str) -> api.InstanceDetail:
    """`brev run --keep`: the instance stays after the run; its TTL, if any, still applies."""
    return instance_lifetime.release_lease(session, ctx, name)


@router.delete("/orgs/{org}/instances/{name}")
def delete_instance(session: DbSession, ctx: InOrg, name: str) -> api.InstanceDetail:
    return instance_actions.delete(session, ctx, name)
