"""How `brev run` ends. The command's own exit code passes through unchanged (0-255, 128+N for
a signal); brev's own failures use codes a command rarely uses, so a CI log tells "your test
failed" from "no GPU today". docs/ci.md lists them; keep it in step."""

from __future__ import annotations

USAGE = 2  # as click, and every Unix tool: the command line is wrong
PROVISIONING_FAILED = 69  # EX_UNAVAILABLE: every placement failed for another reason
BREV_ERROR = 70  # EX_SOFTWARE: the plane unreachable, a refused token, an unexpected answer
SYNC_FAILED = 74  # EX_IOERR: the working directory could not be copied to the machine
NO_CAPACITY = 75  # EX_TEMPFAIL: no GPU of that kind free anywhere allowed; try again later
TIMEOUT = 124  # as timeout(1): --timeout passed before it ran, or its TTL ended the run
CONNECTION_LOST = 255  # as ssh: the connection to the machine dropped mid-run
SIGINT = 130
SIGTERM = 143
