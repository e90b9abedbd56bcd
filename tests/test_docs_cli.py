"""docs/cli.md keeps up with the CLI: its table of exit codes lists every code of
brev/cli/exit_codes.py."""

from __future__ import annotations

import re
from pathlib import Path

from brev.cli import exit_codes

REPO = Path(__file__).resolve().parent.parent


def test_docs_list_every_exit_code() -> None:
    reference = (REPO / "docs" / "cli.md").read_text()
    section = reference[reference.index("## Exit codes") :]
    for code in exit_codes.MEANINGS:
        assert re.search(rf"^\| `{code}` \|", section, re.M), code
