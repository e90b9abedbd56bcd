"""A bounded load on real planes: agents reporting at their pace while users list, create and
delete, all driven from one asyncio loop (httpx), and the check that nothing was lost.

What bench/load.py (minutes, prints the percentiles) and tests/test_load.py (seconds, asserts
the behaviour) share. It imports only brev, httpx and SQLAlchemy, so the suite imports it as
`bench.loadgen`.

- Agents: `seed_fleet` writes running instances and one agent token each straight into the
  database (as `POST .../agent-token` would, less its audit event; `next_check_at` a day
  ahead, so that no reconciler polls a cloud for machines that do not exist). Agent i reports
  every `interval_s`, starting at i/agents of an interval (a steady agents/interval_s
  requests/s), always to the same server (a load balancer that keeps connections). It keeps
  what was not acknowledged and sends it again with the next report, oldest first, as
  `brev agent run` does. Each report carries its seq in every GPU's `memory_used_mib`, so
  every stored sample (`gpu_samples`, a row per GPU per report) names the report it came from.
- Users: members of the org, each on one server, cycling list, create, list, list, delete
  with `think_s` (0.5-1.5x) between requests; whatever is still theirs at the end is deleted.
- `lost_reports` reads the database: every acknowledged seq of every agent is stored exactly
  once (one sample per GPU), none that was never sent is, and each instance's last seq is the
  last one acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select

from brev.api import API_PREFIX
from brev.client import BrevClient
from brev.server.auth import hash_secret, new_secret, visible_prefix
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import ApiToken, GpuSample, Instance, Membership, Org, utcnow

ORG = "default"
GPUS = 8
JSON = "application/json"
REPORTS = "POST /agent/reports"
LIST = "GET /orgs/{org}/instances"
CREATE = "POST /orgs/{org}/instances"
DELETE = "DELETE /orgs/{org}/instances/{name}"
# One user's requests, over and over: most are lists, as at a terminal or a dashboard.
USER_CYCLE = (LIST, CREATE, LIST, LIST, DELETE)
# An agent waits 10 s for an answer (brev.agent.uplink), then sends the report again with
# its next one; a user waits longer before the request counts as failed (a slow answer on a
# loaded machine is not what the load test asserts on).
AGENT_TIMEOUT_S = 10.0
USER_TIMEOUT_S = 120.0
# After the load, how often and for how long agents send what is still unacknowledged.
RETRY_S = 1.0
FLUSH_S = 60.0
# Failures kept word for word (the rest are only counted).
KEPT_FAILURES = 20


@dataclass(frozen=True)
class LoadShape:
    agents: int = 1_000
    interval_s: float = 10.0
    users: int = 20
    think_s: float = 2.0
    seconds: float = 35.0
    # What the users create: moto's AWS in the tests and bench/load.py.
    create: dict[str, Any] = field(
        default_factory=lambda: {"gpu": "a100:8", "providers": ["aws"], "region": "us-east-1"}
    )


@dataclass(frozen=True)
class Agent:
    instance_id: str
    token: str


@dataclass
class Outcome:
    """What the load saw, per agent and per route."""

    sent: list[int]  # agent i's highest seq sent
    acked: list[int]  # agent i's last_seq, as the plane last answered it
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    late_ms: list[float] = field(default_factory=list)  # agents' reports, behind schedule
    retries: list[str] = field(default_factory=list)  # timeouts and resets, sent again
    retry_count: int = 0
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def note(self, route: str, started: float, status: int) -> None:
        self.latencies.setdefault(route, []).append((time.perf_counter() - started) * 1000.0)
        self.statuses[(route, status)] += 1

    def fail(self, what: str) -> None:
        self.failure_count += 1
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append(what)

    def retried(self, what: str) -> None:
        self.retry_count += 1
        if len(self.retries) < KEPT_FAILURES:
            self.retries.append(what)

    def server_errors(self) -> dict[tuple[str, int], int]:
        return {key: n for key, n in self.statuses.items() if key[1] >= 500}

    def summary(self) -> list[str]:
        """A line per route: count, p50, p99 and max (ms), its statuses; then the retries."""
        lines = []
        for route in (REPORTS, LIST, CREATE, DELETE):
            values = self.latencies.get(route, [])
            statuses = sorted((s, n) for (r, s), n in self.statuses.items() if r == route)
            lines.append(
                f"{route:<34} n={len(values):<5} p50 {self.percentile(route, 50):7.1f} ms  "
                f"p99 {self.percentile(route, 99):7.1f} ms  max {max(values, default=0):7.1f} ms"
                f"  statuses {dict(statuses)}"
            )
        if len(self.late_ms) > 1:
            late = statistics.quantiles(self.late_ms, n=100, method="inclusive")
            lines.append(
                f"reports sent behind schedule (this process's own lag): p50 {late[49]:.1f} ms"
                f"  p99 {late[98]:.1f} ms"
            )
        lines.append(f"sent again after a timeout or reset: {self.retry_count}")
        return lines

    def percentile(self, route: str, cut: int) -> float:
        values = self.latencies.get(route, [])
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


# -- seeding ---------------------------------------------------------------------------------


def seed_fleet(database_url: str, count: int, org: str = ORG) -> list[Agent]:
    """`count` running 8-GPU instances in `org` and an agent token each, written directly."""
    engine = make_engine(database_url)
    agents: list[Agent] = []
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
            admin_id = session.scalars(
                select(Membership.user_id).where(
                    Membership.org_id == org_id, Membership.role == "admin"
                )
            ).first()
            if admin_id is None:
                raise RuntimeError(f"org '{org}' has no admin to seed instances as")
            later = utcnow() + timedelta(days=1)
            instances = [
                Instance(
                    org_id=org_id,
                    name=f"gpu-{number:04d}",
                    created_by_id=admin_id,
                    status="running",
                    health="healthy",
                    gpu_spec="H200:8",
                    gpu_model="H200",
                    gpu_count=GPUS,
                    provider="aws",
                    region="us-east-1",
                    instance_type="p5en.48xlarge",
                    price_per_hour=63.30,
                    next_check_at=later,
                )
                for number in range(count)
            ]
            session.add_all(instances)
            session.flush()
            for instance in instances:
                secret = new_secret()
                agents.append(Agent(instance.id, secret))
                session.add(
                    ApiToken(
                        user_id=admin_id,
                        org_id=org_id,
                        name=f"agent-{instance.id}",
                        kind="agent",
                        instance_id=instance.id,
                        prefix=visible_prefix(secret),
                        secret_hash=hash_secret(secret),
                    )
                )
    finally:
        engine.dispose()
    return agents


def add_users(url: str, admin_token: str, count: int, org: str = ORG) -> list[str]:
    """`count` members of `org`, added through the API; their login tokens."""
    with BrevClient(url, admin_token, org=org) as admin:
        added = [admin.add_member(f"user{n:02d}@load.example") for n in range(count)]
    return [a.login_token for a in added if a.login_token]


# -- the load --------------------------------------------------------------------------------


def _report(seq: int) -> dict[str, Any]:
    """An 8-GPU report as `brev agent run` sends it (shortened host), its seq in the GPUs."""
    gpus = [
        {
            "index": i,
            "uuid": f"GPU-{i:08x}-9184-9b8e-5a1a-9ba7d688cef7",
            "name": "NVIDIA H200",
            "bus_id": f"00000000:00:{6 + i:02X}.0",
            "memory_total_mib": 143771.0,
            "memory_used_mib": float(seq),
            "utilization_gpu_pct": 37.0,
            "utilization_memory_pct": 12.0,
            "temperature_c": 41.0,
            "power_draw_w": 312.5,
            "power_limit_w": 700.0,
            "mig_mode": "Disabled",
            "ecc_uncorrected": 0.0,
            "processes": [],
            "xid_errors": [],
        }
        for i in range(GPUS)
    ]
    host = {"hostname": "load", "os": "Debian GNU/Linux 12", "cpu_count": 192, "ssh_sessions": 0}
    return {
        "collected_at": utcnow().isoformat(),
        "source": "nvidia-smi",
        "driver_version": "580.159.04",
        "gpus": gpus,
        "host": host,
        "problems": [],
    }


async def _agent(
    number: int,
    agent: Agent,
    client: httpx.AsyncClient,
    shape: LoadShape,
    start: float,
    deadline: float,
    outcome: Outcome,
) -> None:
    """Agent `number`: a report every interval until the deadline, then what is still
    unacknowledged again every RETRY_S until it is (or FLUSH_S have passed)."""
    pending: list[dict[str, Any]] = []  # not acknowledged yet, oldest first
    due = start + number * shape.interval_s / shape.agents
    while due < deadline:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        # How late this process is itself: its loop runs every agent, and what it cannot keep
        # up with shows here, not in the plane's latencies.
        outcome.late_ms.append((time.perf_counter() - due) * 1000.0)
        due += shape.interval_s
        outcome.sent[number] += 1
        pending.append({"seq": outcome.sent[number], "report": _report(outcome.sent[number])})
        pending = await _send(number, agent, client, pending, outcome)
    give_up = time.perf_counter() + FLUSH_S
    while pending and time.perf_counter() < give_up:
        await asyncio.sleep(RETRY_S)
        pending = await _send(number, agent, client, pending, outcome)


async def _send(
    number: int,
    agent: Agent,
    client: httpx.AsyncClient,
    pending: list[dict[str, Any]],
    outcome: Outcome,
) -> list[dict[str, Any]]:
    """One POST of the pending reports; those still not acknowledged after it."""
    body = json.dumps({"reports": pending, "interval_seconds": 10}).encode()
    headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": JSON}
    started = time.perf_counter()
    try:
        answer = await client.post(f"{API_PREFIX}/agent/reports", content=body, headers=headers)
    except httpx.TransportError as error:
        # What the agent does too: keep them, send them again with the next report.
        outcome.retried(f"{REPORTS} agent {number}: {type(error).__name__} {error}")
        return pending
    outcome.note(REPORTS, started, answer.status_code)
    if answer.status_code != 200:
        outcome.fail(f"{REPORTS} agent {number}: {answer.status_code} {answer.text[:300]}")
        return pending
    last_seq: int = answer.json()["last_seq"]
    outcome.acked[number] = last_seq
    return [r for r in pending if r["seq"] > last_seq]


async def _user(
    number: int,
    client: httpx.AsyncClient,
    shape: LoadShape,
    deadline: float,
    outcome: Outcome,
) -> None:
    rng = random.Random(number)
    mine: list[str] = []
    made = 0
    await asyncio.sleep(rng.uniform(0, shape.think_s))
    step = 0
    while time.perf_counter() < deadline:
        action = USER_CYCLE[step % len(USER_CYCLE)]
        step += 1
        if action == CREATE:
            made += 1
            name = f"load-u{number:02d}-{made}"
            body = {**shape.create, "name": name}
            if await _call(client, outcome, CREATE, "POST", f"/orgs/{ORG}/instances", 201, body):
                mine.append(name)
                outcome.created.append(name)
        elif action == DELETE and mine:
            await _delete(client, outcome, mine.pop(0))
        else:
            await _call(client, outcome, LIST, "GET", f"/orgs/{ORG}/instances", 200)
        await asyncio.sleep(rng.uniform(0.5, 1.5) * shape.think_s)
    for name in mine:
        await _delete(client, outcome, name)


async def _delete(client: httpx.AsyncClient, outcome: Outcome, name: str) -> None:
    if await _call(client, outcome, DELETE, "DELETE", f"/orgs/{ORG}/instances/{name}", 200):
        outcome.deleted.append(name)


async def _call(
    client: httpx.AsyncClient,
    outcome: Outcome,
    route: str,
    method: str,
    path: str,
    expected: int,
    body: dict[str, Any] | None = None,
) -> bool:
    started = time.perf_counter()
    try:
        answer = await client.request(method, f"{API_PREFIX}{path}", json=body)
        await answer.aread()
    except httpx.TransportError as error:
        outcome.fail(f"{method} {path}: {type(error).__name__} {error}")
        return False
    outcome.note(route, started, answer.status_code)
    if answer.status_code != expected:
        outcome.fail(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return False
    return True


async def _drive(
    urls: list[str], agents: list[Agent], user_tokens: list[str], shape: LoadShape
) -> Outcome:
    outcome = Outcome(sent=[0] * len(agents), acked=[0] * len(agents))
    # A connection per request, as the agent (urllib) and the CLI (a process a command) make.
    fresh = httpx.Limits(max_keepalive_connections=0)
    agent_clients = [
        httpx.AsyncClient(base_url=u, limits=fresh, timeout=AGENT_TIMEOUT_S) for u in urls
    ]
    user_clients = [
        httpx.AsyncClient(
            base_url=urls[n % len(urls)],
            headers={"Authorization": f"Bearer {token}"},
            limits=fresh,
            timeout=USER_TIMEOUT_S,
        )
        for n, token in enumerate(user_tokens)
    ]
    start = time.perf_counter() + 0.5
    deadline = start + shape.seconds
    try:
        tasks = [
            _agent(n, a, agent_clients[n % len(urls)], shape, start, deadline, outcome)
            for n, a in enumerate(agents)
        ]
        tasks += [_user(n, c, shape, deadline, outcome) for n, c in enumerate(user_clients)]
        await asyncio.gather(*tasks)
    finally:
        for client in agent_clients + user_clients:
            await client.aclose()
    outcome.wall_s = time.perf_counter() - start
    return outcome


def run_load(
    urls: list[str], agents: list[Agent], user_tokens: list[str], shape: LoadShape
) -> Outcome:
    """The load for `shape.seconds` (then the users' last deletes); what it saw."""
    return asyncio.run(_drive(urls, agents, user_tokens, shape))


def report_to_all(urls: list[str], agents: list[Agent], seq: int) -> list[list[httpx.Response]]:
    """Each agent's report `seq` sent to every server at once (a re-send through another
    replica while the first still writes it); the answers, per agent."""

    async def send() -> list[list[httpx.Response]]:
        async with httpx.AsyncClient(timeout=USER_TIMEOUT_S) as client:

            async def everywhere(agent: Agent) -> list[httpx.Response]:
                body = json.dumps({"reports": [{"seq": seq, "report": _report(seq)}]})
                headers = {"Authorization": f"Bearer {agent.token}", "Content-Type": JSON}
                posts = [
                    client.post(f"{url}{API_PREFIX}/agent/reports", content=body, headers=headers)
                    for url in urls
                ]
                return list(await asyncio.gather(*posts))

            return list(await asyncio.gather(*(everywhere(a) for a in agents)))

    return asyncio.run(send())


# -- nothing lost ----------------------------------------------------------------------------


def stored_twice(database_url: str, agents: list[Agent]) -> dict[tuple[str, int], int]:
    """(instance id, seq) of every report of these agents not stored exactly once: its rows."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(GpuSample.instance_id, GpuSample.memory_used_mib, func.count())
                .where(GpuSample.instance_id.in_([a.instance_id for a in agents]))
                .group_by(GpuSample.instance_id, GpuSample.memory_used_mib)
                .having(func.count() != GPUS)
            ).all()
    finally:
        engine.dispose()
    return {(instance_id, int(seq or 0)): count for instance_id, seq, count in rows}


def lost_reports(database_url: str, agents: list[Agent], outcome: Outcome) -> list[str]:
    """Each agent's acknowledged reports, stored exactly once; what is wrong, or nothing."""
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            counts = session.execute(
                select(GpuSample.instance_id, GpuSample.memory_used_mib, func.count())
                .where(GpuSample.instance_id.in_([a.instance_id for a in agents]))
                .group_by(GpuSample.instance_id, GpuSample.memory_used_mib)
            ).all()
            seq_rows = session.execute(
                select(Instance.id, Instance.last_report_seq).where(
                    Instance.id.in_([a.instance_id for a in agents])
                )
            ).all()
            last_seqs = {instance_id: seq for instance_id, seq in seq_rows}
    finally:
        engine.dispose()
    stored: dict[str, dict[int, int]] = {}
    for instance_id, seq, rows in counts:
        stored.setdefault(instance_id, {})[int(seq or 0)] = rows
    problems: list[str] = []
    for number, agent in enumerate(agents):
        seqs = stored.get(agent.instance_id, {})
        acked, sent = outcome.acked[number], outcome.sent[number]
        last = last_seqs.get(agent.instance_id) or 0
        # Stored: 1..last, each once. A report whose answer was lost may be stored (and its
        # re-send dropped), so last may pass the acknowledged seq, never the seq sent.
        missing = [s for s in range(1, last + 1) if s not in seqs]
        not_once = {s: n for s, n in seqs.items() if n != GPUS}
        unexpected = [s for s in seqs if not 1 <= s <= last]
        if missing or not_once or unexpected or not acked <= last <= sent:
            problems.append(
                f"agent {number}: acknowledged up to {acked}, sent up to {sent}, last_seq {last};"
                f" missing {missing[:10]}, stored not {GPUS} times {sorted(not_once.items())[:10]}"
                f", beyond last_seq {unexpected[:10]}"
            )
    return problems
