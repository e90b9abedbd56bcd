"""How commands print: rich tables on a terminal, plain columns in a pipe, JSON on request.

Data goes to stdout; messages for the person (hints, confirmations) go to stderr, so
`brev ls | awk ...` and `TOKEN=$(brev token create ...)` see only data.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from brev.duration import format_duration

# Not typing's: the fast paths (brev.cli.fast) print through this module, and importing typing
# costs them 3 ms of start-up. mypy reads the name as it reads typing.TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pydantic import BaseModel


def print_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    # pydantic_core serialises models (and lists of them) in Rust: 5x faster than
    # model_dump + json.dumps on a thousand instances.
    from pydantic_core import to_json

    sys.stdout.write(to_json(data, indent=2).decode() + "\n")


# rich measures every cell: 1,000 rows of 7 columns take about 0.4 s to draw. Past this many
# rows a terminal gets the aligned plain layout (bold header), which prints at once.
RICH_TABLE_MAX_ROWS = 200


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    terminal = sys.stdout.isatty()
    if terminal and len(rows) <= RICH_TABLE_MAX_ROWS:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, header_style="bold")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    # Plain, aligned columns with an upper-case header: what `docker ps` and `kubectl get` print.
    header = [c.upper() for c in columns]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (header, *rows)
    ]
    if terminal:
        lines[0] = f"\x1b[1m{lines[0]}\x1b[0m"
    sys.stdout.write("\n".join(lines) + "\n")


def note(message: str) -> None:
    """A message for the person, not for a pipe."""
    sys.stderr.write(message + "\n")


def age(moment: datetime) -> str:
    return format_duration((datetime.now(UTC) - moment).total_seconds())


def until(moment: datetime | None, never: str = "-") -> str:
    """How far off a moment is, e.g. `in 1h`; `now` once it has passed."""
    if moment is None:
        return never
    left = (moment - datetime.now(UTC)).total_seconds()
    # Half a minute more: a TTL set to 2h a moment ago reads `in 2h`, not `in 1h`.
    return f"in {format_duration(left + 30)}" if left >= 1 else "now"


def when(moment: datetime | None, never: str = "never") -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else never
