"""How fast `brev search a100` answers, and how fast the catalog query behind it runs.

    .venv/bin/python bench/search.py [--runs N]

Starts its own control plane (`brev server` on a free port, in a temporary BREV_HOME), then
times, round after round and interleaved so machine noise hits every command alike:

- `python -c pass` with this venv's python: the "speed of light" of any Python command;
- `brev search a100` and `brev search a100 --json` as the console script, stdout to a pipe;
- the bare `GET /api/v1/orgs/default/offers?gpu=a100`, in this process with httpx, to show
  how much of the command is the server.

Then, in this process: loading the shipped catalog from its CSVs (uncached), `find_offers`
over the whole catalog (no filter, sorted by price), and the same plus the conversion of every
offer to `brev.api.Offer` that the server does.

Prints medians (and p90 for commands), each command's median as a multiple of the `python -c
pass` one, and PASS/MISS against the targets: the whole command under 0.5 s, the query under
20 ms. Exits 0 either way: it is a benchmark, not a test.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import TypeAdapter

from brev import api
from brev.catalog import OfferQuery, find_offers, load_catalog

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
else:
    import harness

PYTHON, BREV = harness.PYTHON, harness.BREV
ORG = "default"
IN_PROCESS_RUNS = 200
# Measuring stops after this many seconds even when fewer than --runs rounds are done (never
# before MIN_RUNS), so the benchmark stays around a minute on a slow machine.
MEASURE_BUDGET_S = 45.0

BASELINE = "python -c pass"
COMMAND = "brev search a100"
QUERY = "find_offers, whole catalog"
TARGETS_MS = {COMMAND: 500.0, QUERY: 20.0}


def measure_in_process(timings: harness.Timings) -> int:
    """Catalog load, the whole-catalog query and the query plus the API conversion; offers."""
    as_api = TypeAdapter(list[api.Offer])
    whole_catalog = OfferQuery()
    load_catalog()  # warm: the server keeps the catalog for its lifetime
    as_api.validate_python(find_offers(whole_catalog), from_attributes=True)
    for _ in range(IN_PROCESS_RUNS // 10):
        started = time.perf_counter()
        load_catalog.__wrapped__()
        timings.add("load_catalog (uncached)", time.perf_counter() - started)
    for _ in range(IN_PROCESS_RUNS):
        started = time.perf_counter()
        found = find_offers(whole_catalog)
        timings.add(QUERY, time.perf_counter() - started)
        as_api.validate_python(found, from_attributes=True)
        timings.add(f"{QUERY} + api.Offer", time.perf_counter() - started)
    return len(load_catalog().offers)


def verdict(name: str, median: float) -> str:
    target = TARGETS_MS.get(name)
    if target is None:
        return ""
    return f"< {target:g} ms {'PASS' if median < target else 'MISS'}"


def report(
    commands: harness.Timings, in_process: harness.Timings, rounds: int, runs: int, offers: int
) -> None:
    print(harness.python_line())
    print(f"machine  {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"platform {platform.platform()}")
    print(f"catalog  {offers} offers")
    print(harness.rounds_line(rounds, runs))
    print()
    width = max(len(name) for name in [*commands.samples, *in_process.samples])
    for first, timings, per, ratio, digits in [
        ("command", commands, commands.median(BASELINE), "x python", 1),
        ("in this process", in_process, in_process.median(QUERY), "x query", 2),
    ]:
        print(harness.table_header(first, width, ratio))
        for name in timings.samples:
            print(timings.row(name, width, per, verdict(name, timings.median(name)), digits))
        print()
    print("x python: median / median of `python -c pass` (same venv python, same rounds).")
    print("GET row: the request alone, in this process, on a kept-alive httpx connection.")


def main() -> None:
    runs = harness.parse_runs(__doc__)
    harness.exit_on_sigterm()
    harness.require_brev()

    home = Path(tempfile.mkdtemp(prefix="brev-bench-search-"))
    try:
        with harness.control_plane(home) as plane:
            env = plane.cli_environment(ORG)
            path = f"{api.API_PREFIX}/orgs/{ORG}/offers"
            with plane.http() as client:
                runners = {
                    BASELINE: harness.command_runner([PYTHON, "-c", "pass"], env, home),
                    COMMAND: harness.command_runner([BREV, "search", "a100"], env, home),
                    f"{COMMAND} --json": harness.command_runner(
                        [BREV, "search", "a100", "--json"], env, home
                    ),
                    f"GET {path}?gpu=a100": harness.http_runner(client, path, {"gpu": "a100"}),
                }
                commands, rounds = harness.measure(runners, runs, MEASURE_BUDGET_S)
        in_process = harness.Timings()
        offers = measure_in_process(in_process)
        report(commands, in_process, rounds, runs, offers)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
