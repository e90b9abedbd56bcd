"""How `brev` ends: the exit codes scripts and coding agents can rely on (docs/cli.md lists
them, docs/ci.md those of `brev run`; keep both in step).

Every command: 0 done, 1 an error (one `error: ...` line on stderr), 2 the command line is
wrong (click's usage errors), 130 interrupted. `shell`, `exec` and `cp` end with the remote
command's (or scp's) own code, 255 when ssh itself could not get in. `brev run` passes its
command's code through unchanged (0-255, 128+N for a signal); its own failures use codes a
command rarely uses, so a CI log tells "your test failed" from "no GPU today".

Plain constants, nothing imported: the fast paths (brev.cli.launch) read them before typer."""

from __future__ import annotations

OK = 0
ERROR = 1  # a BrevError: what went wrong and what to do, in one line
USAGE = 2  # as click, and every Unix tool: the command line is wrong
PROVISIONING_FAILED = 69  # EX_UNAVAILABLE: every placement failed for another reason
BREV_ERROR = 70  # EX_SOFTWARE: the plane unreachable, a refused token, an unexpected answer
SYNC_FAILED = 74  # EX_IOERR: the working directory could not be copied to the machine
NO_CAPACITY = 75  # EX_TEMPFAIL: no GPU of that kind free anywhere allowed; try again later
TIMEOUT = 124  # as timeout(1): --timeout passed before it ran, or its TTL ended the run
SIGINT = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
INTERRUPTED = SIGINT
SIGTERM = 143
# What ssh exits with when it, not the remote command, failed: no connection, login refused,
# a host key that does not match. `brev run` reads it as the connection lost mid-run.
SSH_FAILED = 255
CONNECTION_LOST = SSH_FAILED

# What each code means, in the words `brev skill` and docs/cli.md use (a test keeps the docs'
# table in step with this one).
MEANINGS: dict[int, str] = {
    OK: "done",
    ERROR: "an error: one `error: ...` line on stderr says what and what to do",
    USAGE: "the command line is wrong (unknown option, missing argument, bad value)",
    PROVISIONING_FAILED: "brev run: every placement failed",
    BREV_ERROR: "brev run: a brev error (plane unreachable, token refused)",
    SYNC_FAILED: "brev run: the working directory could not be synced",
    NO_CAPACITY: "brev run: no capacity anywhere allowed; try again later",
    TIMEOUT: "brev run: --timeout passed, or the instance's TTL ended the run",
    SIGINT: "interrupted (Ctrl-C, SIGINT)",
    SIGTERM: "brev run: cancelled by SIGTERM",
    SSH_FAILED: "ssh could not get in (shell, exec, cp, port-forward...); brev run: the "
    "connection was lost",
}
