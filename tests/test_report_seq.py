"""Agents' report numbers: each applied once, by instances' and nodes' reports alike
(brev.server.services.report_seq)."""

from __future__ import annotations

from brev import api
from brev.server.services.report_seq import unseen
from tests.conftest import Plane
from tests.test_scheduler import gpu, register, report


def _reports(*seqs: int) -> list[api.AgentReportIn]:
    return [api.AgentReportIn(seq=seq, report={"n": seq}) for seq in seqs]


def test_unseen_is_oldest_first_and_each_number_once() -> None:
    assert [r.seq for r in unseen(_reports(5, 3, 4, 4, 1, 2), last_seq=2)] == [3, 4, 5]
    assert unseen(_reports(2, 1), last_seq=2) == []
    assert unseen([], last_seq=0) == []


def test_a_node_agents_resent_reports_are_dropped(plane: Plane) -> None:
    node = register(plane.http(), plane.admin_token, "spark", 1)  # its first report: seq 1
    agent = plane.http(node.token)

    def send(*seqs: int) -> api.AgentReportsAccepted:
        body = {"reports": [{"seq": s, "report": report([gpu(0)])} for s in seqs]}
        response = agent.post(f"{api.API_PREFIX}/agent/reports", json=body)
        assert response.status_code == 200, response.text
        return api.AgentReportsAccepted.model_validate(response.json())

    first = send(3, 2, 3)
    assert (first.accepted, first.last_seq) == (2, 3)
    again = send(1, 2, 3)  # the batch again, its answer lost
    assert (again.accepted, again.last_seq) == (0, 3)
