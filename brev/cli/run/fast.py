"""`brev run --on NAME --no-sync [--env K=V]... -- CMD` before typer, httpx or pydantic load:
when the cached certificate and status vouch for NAME (as for `brev exec`'s fast path), one
ssh connection runs the command's wrapper, which cleans up after itself. Anything else, or
any doubt, goes to the full CLI (None)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import uuid
from types import FrameType

from brev.cli import exit_codes
from brev.cli.run.arguments import UsageError, parse_env

GRACE_S = 10.0


def parse(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """(NAME, --env values, the command) of `run --on NAME --no-sync ... -- CMD`; None for
    any other shape."""
    if argv[:1] != ["run"] or "--" not in argv:
        return None
    cut = argv.index("--")
    words, command = argv[1:cut], argv[cut + 1 :]
    name: str | None = None
    env: list[str] = []
    no_sync = False
    i = 0
    while i < len(words):
        word = words[i]
        key, equals, value = word.partition("=")
        if word == "--no-sync":
            no_sync = True
        elif key in ("--on", "--env") and equals:
            name, env = (value, env) if key == "--on" else (name, [*env, value])
        elif word in ("--on", "--env") and i + 1 < len(words):
            i += 1
            name, env = (words[i], env) if word == "--on" else (name, [*env, words[i]])
        else:
            return None
        i += 1
    if not (name and no_sync and command) or name.startswith("-"):
        return None
    return name, env, command


def fast_run(argv: list[str]) -> int | None:
    parsed = parse(argv)
    if parsed is None or os.environ.get("GITHUB_STEP_SUMMARY"):
        return None
    name, env_words, command = parsed
    from brev.ssh import config as ssh_config

    p = ssh_config.paths()
    if shutil.which("ssh") is None or not ssh_config.cached_alias(p, name):
        return None
    try:
        env = parse_env(env_words)
    except UsageError:
        return None  # the full CLI says what is wrong
    from brev.cli.run.remote import RemoteCommand, RemoteLayout
    from brev.cli.run.ssh_session import SshSession

    remote = RemoteCommand(
        SshSession(p.config, name, shared=False), RemoteLayout(uuid.uuid4().hex[:12], synced=False)
    )
    signals: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        sys.stdout.flush()
        remote.start(" ".join(command), env, forget=True)
        code = remote.wait(lambda: bool(signals))
        if code is None:
            remote.signal(signals[0])
            deadline = time.monotonic() + GRACE_S  # a second signal: at once
            remote.wait(lambda: len(signals) > 1 or time.monotonic() > deadline)
            remote.kill()
            return 128 + signals[0]
        if code == exit_codes.CONNECTION_LOST or code < 0:
            recorded = remote.recorded_exit()
            remote.cleanup()
            if recorded is None:
                sys.stderr.write(f"brev: error: the SSH connection to {name} was lost mid-run\n")
                return exit_codes.CONNECTION_LOST
            return recorded
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
