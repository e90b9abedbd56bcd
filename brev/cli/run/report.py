"""What `brev run` tells the person or the CI system: one status line per phase on stderr, or
NDJSON events there with --json, and a Markdown summary for GitHub Actions' step summary.

stdout is the command's alone: a job may pipe it."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


@dataclass
class Outcome:
    """What the summary needs, filled in as the run goes."""

    instance: str | None = None
    gpu: str = "-"
    where: str = "-"
    price_per_hour: float | None = None
    exit_code: int | None = None
    reason: str = ""
    started: float = field(default_factory=time.monotonic)
    rented_at: float | None = None
    released_at: float | None = None

    def cost_usd(self) -> float | None:
        if self.price_per_hour is None or self.rented_at is None:
            return None
        end = self.released_at or time.monotonic()
        return round(self.price_per_hour * (end - self.rented_at) / 3600, 4)


class Reporter:
    def __init__(self, *, json_events: bool, stream: TextIO | None = None) -> None:
        self.json_events = json_events
        self._stream = stream or sys.stderr
        self.outcome = Outcome()

    def event(self, name: str, line: str, **details: Any) -> None:
        """One phase: a line for a person, or an NDJSON object for a program."""
        if self.json_events:
            record = {
                "event": name,
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "elapsed_s": round(time.monotonic() - self.outcome.started, 3),
                **details,
            }
            text = json.dumps(record, default=str)
        else:
            text = f"brev: {line}"
        self._stream.write(text + "\n")
        self._stream.flush()

    def warn(self, line: str, **details: Any) -> None:
        self.event("warning", f"warning: {line}", message=line, **details)

    def write_step_summary(self, path: str | None) -> None:
        """Append the run's table to GITHUB_STEP_SUMMARY (when GitHub Actions sets it)."""
        if not path:
            return
        o = self.outcome
        cost = o.cost_usd()
        wall = time.monotonic() - o.started
        rows = [
            ("exit code", "-" if o.exit_code is None else str(o.exit_code)),
            ("instance", o.instance or "-"),
            ("GPU", o.gpu),
            ("where", o.where),
            ("$/h", "-" if o.price_per_hour is None else f"{o.price_per_hour:.2f}"),
            ("wall time", f"{wall:.1f} s"),
            ("cost", "-" if cost is None else f"${cost:.4f}"),
        ]
        if o.reason:
            rows.append(("outcome", o.reason))
        text = "### brev run\n\n| | |\n|---|---|\n" + "".join(
            f"| {key} | {_cell(value)} |\n" for key, value in rows
        )
        try:
            with Path(path).open("a") as summary:
                summary.write(text + "\n")
        except OSError as error:
            self.warn(f"cannot write the step summary {path}: {error.strerror}")


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")
