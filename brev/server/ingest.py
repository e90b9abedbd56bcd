"""Agents' reports, written in batches: a writer thread or two (WRITERS), a transaction a batch.

A thousand agents reporting every few seconds make the report endpoint the plane's busiest.
Written one request per transaction, each report pays for its own token lookup, its own
commit (on SQLite a WAL sync) and three thread-pool hops of the framework. Here the endpoint is
async and only queues the report; a writer takes everything queued, authenticates the whole
batch in one query, locks its instances and nodes, applies each report (a routine one joins
the batch's one UPDATE, brev.server.services.routine_reports; any other goes through
brev.server.services.agents or node_reports), commits once, and then answers every request
of the batch. A request is answered only after the commit that holds its report (group
commit), so an agent that was told "accepted" never loses that report, exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass, fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker

from brev import api
from brev.server.auth import Principal, TokenRow, UserRow, check, hash_secret
from brev.server.db import outage
from brev.server.db.models import ApiToken, Instance, Node, User, utcnow
from brev.server.errors import Forbidden, ServiceError, Unauthenticated
from brev.server.services import gpu_metrics
from brev.server.services.routine_reports import INSTANCE_COLUMNS, InstanceRow, RoutineBatch

log = logging.getLogger("brev.server.ingest")

# A batch takes at most this many requests: bounded work per transaction, and a bounded wait
# for the last request of a burst.
MAX_BATCH = 256


@dataclass
class _Item:
    secret: str | None
    body: api.AgentReports
    done: asyncio.Future[api.AgentReportsAccepted]  # of the event loop that waits for it


Answer = api.AgentReportsAccepted | BaseException


# Writer threads. SQLite takes one writer at a time, so a second would only wait for the
# first. On PostgreSQL, a writer waits for each commit's WAL flush and for every round trip,
# and with one writer the process sat idle meanwhile: 16 cores, 8 client connections, 0.79 of
# a core busy and 375-381 reports/s; with two, 0.95 and 468-471; three, no more
# (docs/benchmarks.md). Two batches never wait on each other in a cycle: each locks its rows in
# id order, as two replicas' writers do.
WRITERS = {"sqlite": 1, "postgresql": 2}


class ReportIngest:
    def __init__(self, sessions: sessionmaker[Session], writers: int = 1) -> None:
        self._sessions = sessions
        self._writers = writers
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def submit(self, secret: str | None, body: api.AgentReports) -> api.AgentReportsAccepted:
        """One request's reports, queued for a writer; its answer, or its ServiceError, once
        the batch that holds them is committed."""
        self._start()
        item = _Item(secret, body, asyncio.get_running_loop().create_future())
        self._queue.put(item)
        return await item.done

    def stop(self) -> None:
        with self._lock:
            for _ in self._threads:
                self._queue.put(None)  # one each: a writer takes one and ends
            for thread in self._threads:
                thread.join(timeout=10)
            self._threads = []

    def _start(self) -> None:
        with self._lock:
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"report-ingest-{n}", daemon=True)
                    for n in range(self._writers)
                ]
                for thread in self._threads:
                    thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[_Item]) -> None:
        _answer(self._answers(batch))

    def _answers(self, batch: list[_Item]) -> list[tuple[_Item, Answer]]:
        try:
            return self._commit(batch)
        except Exception as error:
            if outage.diagnose(error) is not None:
                # Each request answers 503, and the outage is logged once there: not here too,
                # with a traceback, for every batch while it lasts.
                return [(item, error) for item in batch]
            if len(batch) == 1:
                log.exception("writing a report request failed")
                return [(batch[0], error)]
            # One request broke the batch's transaction: write each alone, so that only that
            # one fails (never expected: shapes are checked before queueing; a bug's net).
            log.exception(
                "a batch of %d report requests failed; writing them one by one", len(batch)
            )
            return [answer for item in batch for answer in self._answers([item])]

    def _commit(self, batch: list[_Item]) -> list[tuple[_Item, Answer]]:
        answers: list[tuple[_Item, Answer]] = []
        # One flush (an executemany per table) at the commit instead of two per report (and
        # not one more before the lock's query for the tokens' last use), the routine
        # reports' one UPDATE, and the batch's GPU samples in one INSERT.
        with self._sessions() as session, session.begin(), session.no_autoflush:
            agents, instances = _authenticate(session, [item.secret for item in batch])
            routine, nodes = _lock_reporters(session, agents, instances)
            with gpu_metrics.deferred(session):
                for item, agent in zip(batch, agents, strict=True):
                    answers.append((item, _accept(session, agent, item.body, routine)))
                routine.write(session)
            del nodes
        return answers


# The batch's queries, built once: building one (its IN, its cache key) cost about as much
# CPU as running it.
# What checking a token reads (auth.TokenRow, auth.UserRow), as plain rows: building the
# ORM's two objects per report was a tenth of the writer's CPU. Core on the tables' columns,
# not the ORM's attributes: a select of ORM attributes runs through the ORM's compile and
# loading steps even for plain rows (with them, this query and the lock's were a third of a
# one-report batch's CPU in the writer, profiled).
_tokens = cast(Table, ApiToken.__table__)
_users = cast(Table, User.__table__)
_instances = cast(Table, Instance.__table__)
_TOKEN_COLUMNS = tuple(column.name for column in fields(TokenRow))
_TOKEN_AND_USER = (
    _tokens.c.secret_hash,
    *(_tokens.c[name] for name in _TOKEN_COLUMNS),
    _users.c.id.label("user_id"),
    _users.c.email.label("user_email"),
    _users.c.disabled_at.label("user_disabled_at"),
)
# Where each part of a row of _INSTANCE_TOKENS (and of _TOKENS, its first two parts) is.
_TOKEN_AT = slice(1, 1 + len(_TOKEN_COLUMNS))
_USER_AT = slice(_TOKEN_AT.stop, _TOKEN_AT.stop + 3)
_INSTANCE_AT = slice(_USER_AT.stop, None)
_BY_HASH = _tokens.c.secret_hash.in_(bindparam("hashes", expanding=True))
# The tokens of instances' agents (nearly every report) with their users and their instances'
# rows, in one statement: one round trip less a batch than a query for the tokens and then one
# for the instances. The instances are locked until the commit (PostgreSQL; SQLite has one
# writer), in id order: see _lock_reporters.
_INSTANCE_TOKENS = (
    select(*_TOKEN_AND_USER, *(column.label(f"i_{column.name}") for column in INSTANCE_COLUMNS))
    .select_from(
        _tokens.join(_users, _users.c.id == _tokens.c.user_id).join(
            _instances, _instances.c.id == _tokens.c.instance_id
        )
    )
    .where(_BY_HASH)
    .order_by(_instances.c.id)
    .with_for_update(of=_instances)
)
# Any other token a batch holds: a node's agent's, a user's (refused), none (refused).
_TOKENS = select(*_TOKEN_AND_USER).join(_users, _users.c.id == _tokens.c.user_id).where(_BY_HASH)
_MARK_USED = (
    update(_tokens)
    .where(_tokens.c.id == bindparam("token_id"))
    .values(last_used_at=bindparam("at"))
)
_LOCK_NODES = (
    select(Node)
    .where(Node.id.in_(bindparam("ids", expanding=True)))
    .order_by(Node.id)
    .with_for_update()
)


def _answer(answers: list[tuple[_Item, Answer]]) -> None:
    """Hand a batch's answers to the event loops that wait for them: one wake-up of each loop
    a batch, not one a request (each wake-up is a write to the loop's self-pipe; one a request
    was a tenth of the writer's CPU)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Item, Answer]]] = {}
    for item, answer in answers:
        by_loop.setdefault(item.done.get_loop(), []).append((item, answer))
    for loop, settled in by_loop.items():
        # A closed loop: no one waits for these answers any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, settled)


def _settle(answers: list[tuple[_Item, Answer]]) -> None:
    for item, answer in answers:
        if item.done.done():  # the request was cancelled (its client went away)
            continue
        if isinstance(answer, BaseException):
            item.done.set_exception(answer)
        else:
            item.done.set_result(answer)


def _accept(
    session: Session,
    agent: Principal | ServiceError,
    body: api.AgentReports,
    routine: RoutineBatch,
) -> api.AgentReportsAccepted | ServiceError:
    from brev.server.services import agents, node_reports

    if isinstance(agent, ServiceError):
        return agent
    try:
        if agent.token_node_id is not None:
            # Its queries filter on instances' statuses: let them see this batch's changes.
            session.flush()
            return node_reports.accept(session, agent, body)
        assert agent.token_instance_id is not None  # _authenticate's: scoped to one or other
        answer = routine.accept(session, agent.token_instance_id, body)
        return answer if answer is not None else agents.accept_reports(session, agent, body)
    except ServiceError as error:
        # Raised before the service wrote anything (a deleted instance, a removed node).
        return error


def _lock_reporters(
    session: Session,
    agents: list[Principal | ServiceError],
    instances: dict[str, InstanceRow],
) -> tuple[RoutineBatch, list[Node]]:
    """The batch's instances (read and locked with their tokens) and nodes, so that each
    report's lookup is a dictionary's; locked until the commit (FOR UPDATE on PostgreSQL, in
    id order so that two batches never wait for each other in a cycle; SQLite has one
    writer). A report that reaches two replicas at once (an agent's re-send through the other
    while the first still writes it) is then read by the second only after the first
    committed, and dropped as seen: without the lock both wrote it, its samples and events
    twice. The nodes are held for the batch: the identity map keeps objects only while
    referenced."""
    principals = [a for a in agents if isinstance(a, Principal)]
    instance_ids = [a.token_instance_id for a in principals if a.token_instance_id]
    node_ids = sorted({a.token_node_id for a in principals if a.token_node_id})
    routine = RoutineBatch.of(instances, instance_ids)
    nodes = list(session.scalars(_LOCK_NODES, {"ids": node_ids})) if node_ids else []
    return routine, nodes


def _authenticate(
    session: Session, secrets: list[str | None]
) -> tuple[list[Principal | ServiceError], dict[str, InstanceRow]]:
    """brev.server.auth.authenticate for a whole batch, agent tokens only; and the rows of the
    instances whose agents' tokens they are, locked. One query when every token is an
    instance agent's. The tokens whose last use is due to move (once a minute) move in one
    UPDATE."""
    hashes = {s: hash_secret(s) for s in secrets if s}
    unique = sorted(set(hashes.values()))
    connection = session.connection()
    by_hash: dict[str, tuple[TokenRow, UserRow]] = {}
    instances: dict[str, InstanceRow] = {}
    for row in connection.execute(_INSTANCE_TOKENS, {"hashes": unique}) if unique else []:
        by_hash[row[0]] = (TokenRow(*row[_TOKEN_AT]), UserRow(*row[_USER_AT]))
        instance = InstanceRow(*row[_INSTANCE_AT])
        instances[instance.id] = instance
    others = [h for h in unique if h not in by_hash]
    for row in connection.execute(_TOKENS, {"hashes": others}) if others else []:
        by_hash[row[0]] = (TokenRow(*row[_TOKEN_AT]), UserRow(*row[_USER_AT]))
    now = utcnow()
    used: dict[str, datetime] = {}
    result: list[Principal | ServiceError] = []
    for secret in secrets:
        found = by_hash.get(hashes[secret]) if secret else None
        if secret is None:
            result.append(Unauthenticated("missing token: send 'Authorization: Bearer <token>'"))
        elif found is None:
            result.append(Unauthenticated("invalid token"))
        else:
            token, user = found
            try:
                agent = check(token, user, now)
            except Unauthenticated as error:
                result.append(error)
                continue
            if token.last_used_at == now:
                used[token.id] = now
            scoped = agent.token_instance_id or agent.token_node_id
            if agent.token_kind != "agent" or not scoped:  # noqa: S105 (a kind, not a secret)
                result.append(Forbidden("only the agent token of an instance or node may report"))
            else:
                result.append(agent)
    if used:
        connection.execute(_MARK_USED, [{"token_id": key, "at": at} for key, at in used.items()])
    return result, instances
