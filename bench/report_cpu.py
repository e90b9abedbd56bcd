"""CPU per agent report, in one process: the plane's app beside the bare endpoint's.

    .venv/bin/python bench/report_cpu.py [--reports N] [--concurrency C ...] [--postgres]

bench/heartbeats.py says how many reports a second a server takes; this says where the CPU of
one report goes, without HTTP, sockets or a client competing for the cores. Both apps are
called straight through ASGI from this process with the same 8-GPU report: the bare app of
bench/heartbeats.py (the speed of light), and `create_app` on a fresh SQLite database with 50
seeded agents and its lifespan running (so the report writer runs, in its own thread); with
--postgres, on a throwaway PostgreSQL cluster (bench/pgcluster.py) with its two writers instead.

For each concurrency (how many requests are in flight at once, so how large the writer's
batches can grow) it prints CPU ms per report: the event-loop thread (routing, middlewares,
validation, the hand-off to the writer) and the whole process (the writer's thread too). The
difference between the two is what the writer costs. Exits 0: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import heartbeats, loadgen, pgcluster
else:
    import heartbeats
    import loadgen
    import pgcluster

Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
WARM_UP = 100


class Driver:
    """Posts reports to an ASGI app: each agent's next seq, a fresh collected_at."""

    def __init__(self, app: Asgi, tokens: list[str], report: bytes) -> None:
        self.app, self.tokens, self.report = app, tokens, report
        self.seqs = dict.fromkeys(tokens, 0)

    def body(self, token: str) -> bytes:
        self.seqs[token] += 1
        now = datetime.now(UTC).isoformat().encode()
        report = self.report.replace(b'"%s"', b'"%b"' % now)
        return b'{"reports":[{"seq":%d,"report":%b}],"interval_seconds":10}' % (
            self.seqs[token],
            report,
        )

    async def post(self, token: str) -> int:
        body = self.body(token)
        delivered = False
        statuses: list[int] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if delivered:  # the app only asks again to learn of a disconnect: none comes
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        path = heartbeats.REPORTS_PATH
        headers = [
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "headers": headers,
        }
        await self.app(scope, receive, send)
        return statuses[0]

    async def burst(self, first: int, count: int) -> None:
        tokens = [self.tokens[(first + k) % len(self.tokens)] for k in range(count)]
        statuses = await asyncio.gather(*(self.post(token) for token in tokens))
        refused = [status for status in statuses if status >= 300]
        if refused:
            raise SystemExit(f"the app refused reports: {refused[:5]}")

    async def cpu_ms(self, reports: int, concurrency: int) -> tuple[float, float]:
        """(event-loop thread, whole process) CPU ms per report over `reports` reports."""
        await self.burst(0, WARM_UP)
        process, thread = time.process_time(), time.thread_time()
        for first in range(0, reports, concurrency):
            await self.burst(first, min(concurrency, reports - first))
        return (
            (time.thread_time() - thread) / reports * 1e3,
            (time.process_time() - process) / reports * 1e3,
        )


async def measure(home: Path, reports: int, concurrencies: list[int]) -> None:
    from brev.server.app import create_app
    from brev.server.main import prepare_database
    from brev.server.settings import ServerSettings

    report = heartbeats.eight_gpu_report(home)
    settings = ServerSettings.load()
    prepare_database(settings)
    plane = create_app(settings)
    bare = Driver(heartbeats.bare_app(), ["unused"], report)
    print(f"{reports} reports of {len(report):,} bytes each; CPU ms per report")
    columns = ("in flight", "bare loop", "bare all", "plane loop", "plane all")
    print("  ".join(f"{column:>10}" for column in columns))
    async with plane.router.lifespan_context(plane):
        tokens = [agent.token for agent in loadgen.seed_fleet(settings.database_url, 50)]
        driver = Driver(plane, tokens, report)
        for concurrency in concurrencies:
            bare_loop, bare_all = await bare.cpu_ms(reports, concurrency)
            plane_loop, plane_all = await driver.cpu_ms(reports, concurrency)
            cells = (bare_loop, bare_all, plane_loop, plane_all)
            print(f"{concurrency:>10}  " + "  ".join(f"{cell:>10.3f}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20, 50])
    parser.add_argument("--postgres", action="store_true", help="the plane on PostgreSQL")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="brev-report-cpu-") as directory, ExitStack() as stack:
        home = Path(directory)
        os.environ["BREV_HOME"] = str(home)
        os.environ["BREV_RECONCILE"] = "0"
        if "BREV_SECRET_KEY" not in os.environ:
            from cryptography.fernet import Fernet

            os.environ["BREV_SECRET_KEY"] = Fernet.generate_key().decode()
        if arguments.postgres:
            bindir = pgcluster.postgres_bindir()
            if bindir is None:
                raise SystemExit("--postgres: no PostgreSQL server binaries (initdb) found")
            os.environ["BREV_DATABASE_URL"] = stack.enter_context(pgcluster.postgres(bindir))
        asyncio.run(measure(home, arguments.reports, arguments.concurrency))


if __name__ == "__main__":
    main()
