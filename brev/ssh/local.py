"""The local twin of `SshConnection.run`: the same scripts, run on this machine.

The plane and the CLI run their node scripts either over SSH or here (a box registering
itself, `brev` on the box); both give the same RemoteResult and raise the same
CommandTimedOut, so callers handle one shape."""

from __future__ import annotations

import os
import signal
import subprocess

from brev.ssh.remote import CommandTimedOut, RemoteResult, short_command


def run_local(command: str, *, stdin: bytes | None = None, timeout: float = 300.0) -> RemoteResult:
    """Run `command` with `/bin/sh -c`, feed it `stdin` (then end of file), wait at most
    `timeout` seconds."""
    # Its own process group, so that a timeout kills what the command started too.
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(stdin or b"", timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # Not read to the end: something the command left running outside its group could
        # hold these open for ever.
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        raise CommandTimedOut(
            f"`{short_command(command)}` did not finish within {timeout:g} s here; it was killed"
        ) from None
    return RemoteResult(
        # Over SSH a command killed by a signal has no status (-1); say the same here.
        exit_code=process.returncode if process.returncode >= 0 else -1,
        stdout=stdout.decode(errors="replace"),
        stderr=stderr.decode(errors="replace"),
    )
