from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from brev import api
from brev.server import assignment_watch
from brev.server.deps import Agent, DbSession, InOrg, bearer
from brev.server.ingest import ReportIngest
from brev.server.openapi_errors import USER_ROUTES, WITH_BODY, errors
from brev.server.services import agents

router = APIRouter(tags=["agents"], responses=USER_ROUTES)


@router.post(
    "/agent/reports",
    response_model=api.AgentReportsAccepted,
    responses={**WITH_BODY, **errors(404, 410)},
)
async def post_reports(request: Request, body: api.AgentReports) -> Response:
    """An agent's reports, oldest first (several after an outage). A node's agent gets the
    instances it must host in the answer. Answered once the reports are committed; written in
    batches with other agents' (brev.server.ingest)."""
    agents.check_shape(body)
    ingest: ReportIngest = request.app.state.ingest
    answer = await ingest.submit(bearer(request), body)
    # Serialized here, not validated again against the response model as a returned model
    # would be: the busiest route's answer is built by this code (a tenth of its event-loop
    # CPU, in-process). The document still says AgentReportsAccepted (response_model).
    return Response(answer.model_dump_json(), media_type="application/json")


@router.get("/agent/assignments", responses=errors(410))
async def watch_assignments(
    request: Request,
    after: Annotated[int, Query(description="the version the agent has; -1: answer at once")] = -1,
    wait: Annotated[
        float, Query(ge=0, description="seconds to wait for a change; at most 30")
    ] = 25.0,
) -> api.AssignmentsWatch:
    """A node agent's long-poll: answered as soon as the node's assignments version differs
    from `after`, else after `wait` seconds with the same version. 410 `node_removed` once the
    node was removed. Holds no transaction or thread while it waits, and is not counted by
    the admission limit (brev.server.assignment_watch)."""
    return await assignment_watch.of(request.app).watch(bearer(request), after, wait)


@router.post("/orgs/{org}/instances/{name}/agent-token", status_code=201, responses=errors(404))
def issue_agent_token(session: DbSession, ctx: InOrg, name: str) -> api.AgentToken:
    """A token the instance's agent reports with; it can do nothing else."""
    return agents.issue_token(session, ctx, name)


@router.get("/agent/wheel", response_class=Response)
def agent_wheel(_: Agent) -> Response:
    """This plane's brev as a wheel, for a first boot to install the agent from (no PyPI)."""
    from brev.node.wheel import build_wheel

    name, wheel = build_wheel()
    return Response(
        wheel,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
