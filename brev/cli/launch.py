"""The `brev` console script. The commands people wait on most run before typer, httpx or
pydantic are imported (about 100-200 ms): `brev exec NAME -- CMD...` and `brev run --on NAME
--no-sync -- CMD...` (brev.cli.run.fast) on a machine whose certificate and status are cached
and fresh run ssh at once, `brev ls [--json]` (brev.cli.listing), `brev search` and `brev show
NAME` ask the plane on the standard library, and `brev`, `brev --help` and `brev CMD --help`
print a copy of the full CLI's help (brev.cli.fast). Everything else, and any failure, goes to
the full CLI (brev.cli.main). BREV_FAST=0 turns the fast paths off."""

from __future__ import annotations

import os
import sys

from brev.cli.exit_codes import SSH_FAILED


def main() -> None:
    argv = sys.argv[1:]
    fast = os.environ.get("BREV_FAST", "1") != "0"
    if fast and (len(argv) < 2 or argv[-1] in ("--help", "-h")):
        from brev.cli.fast.help import serve

        status = serve(argv)
        if status is not None:
            sys.exit(status)
    if fast and argv[:1] == ["search"]:
        from brev.cli.fast.search import fast_search

        if fast_search(argv[1:]):
            return
    if fast and argv[:1] == ["show"]:
        from brev.cli.fast.show import fast_show

        if fast_show(argv[1:]):
            return
    if fast and argv in (["ls"], ["ls", "--json"]):
        from brev.cli.listing import fast_ls

        if fast_ls(json_output=len(argv) == 2):
            return
    if (
        fast
        and len(argv) >= 4
        and argv[0] == "exec"
        and argv[2] == "--"
        and not argv[1].startswith("-")
    ):
        code = _fast_exec(argv[1], argv[3:])
        if code is not None:
            sys.exit(code)
    if fast and argv[:1] == ["run"]:
        from brev.cli.run.fast import fast_run

        code = fast_run(argv)
        if code is not None:
            sys.exit(code)
    from brev.cli.main import main as full_cli

    full_cli()


def _fast_exec(name: str, command: list[str]) -> int | None:
    """ssh's exit code; None when the cache cannot vouch for `name` (the full CLI then asks
    the plane, waits, starts)."""
    import shutil
    import subprocess

    from brev.ssh import config as ssh_config

    p = ssh_config.paths()
    if shutil.which("ssh") is None or not ssh_config.cached_alias(p, name):
        return None
    sys.stdout.flush()
    code = subprocess.call(ssh_config.ssh_argv(p, name, "--", " ".join(command)))
    if code == SSH_FAILED:
        # Say why (stopped meanwhile, replaced, no longer ours) without running it again:
        # 255 may also be the command's own status.
        from brev.cli.main import report_error
        from brev.cli.ssh_access import explain_failure
        from brev.errors import BrevError

        try:
            explain_failure(name)
        except BrevError as error:
            report_error(error)
            return 1
    return code
