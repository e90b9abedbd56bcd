"""The command on the machine: started in a process group of its own so a cancel reaches all of
it, tied to the connection so it dies with it, and its exit status kept in a file so a
connection that drops is told apart from a command that exited 255.

Layout, relative to the login directory (the home on a cloud instance, the instance's
directory on a registered node):
    brev-runs/RUN_ID/        the synced working directory (--no-sync: the login directory)
    brev-runs/RUN_ID.state/  pid (the command's process group), exit (its status)
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from brev.cli.run.ssh_session import SshSession

RUNS = "brev-runs"

# POSIX sh, run by the login shell. The lifeline reads the connection's stdin: when the
# connection goes (brev killed, network lost), sshd closes it and the command's group is
# killed. A background job's stdin is /dev/null unless redirected, hence fd 3. The command
# itself runs in the foreground (a background job would ignore SIGINT), under setsid where
# it exists so that its pid names its process group. The status the lifeline's TERM caused
# is not the command's own: the lifeline marks the state "lost" first and no exit is kept.
_WRAPPER = r"""state=$PWD/{state}
mkdir -p "$state" || exit 70
rm -f "$state/exit" "$state/pid" "$state/lost"
cd {workdir} || {{ echo "brev: no directory {workdir} on the machine" >&2; exit 70; }}
{exports}exec 3<&0
( while read -r _ <&3; do :; done
  : > "$state/lost"
  p=$(cat "$state/pid" 2>/dev/null) && {{ kill -TERM "-$p" 2>/dev/null || kill -TERM "$p"; }}
) >/dev/null 2>&1 &
lifeline=$!
launch=
command -v setsid >/dev/null 2>&1 && launch=setsid
$launch /bin/sh -c 'echo $$ > "$1"; exec /bin/sh -c "$2"' brev-run "$state/pid" {command} \
    </dev/null 3<&-
status=$?
[ -e "$state/lost" ] || echo "$status" > "$state/exit"
kill "$lifeline" 2>/dev/null
# What the command left in the background would hold the connection open: it goes too.
p=$(cat "$state/pid" 2>/dev/null) && kill -TERM "-$p" 2>/dev/null
{forget}exit "$status"
"""
# When nothing is copied back afterwards, the wrapper removes its own state, and so saves a
# round trip; but not after a 255, which the caller must tell apart from a lost connection.
_FORGET = '[ "$status" = 255 ] || rm -rf "$state"\n'


@dataclass(frozen=True)
class RemoteLayout:
    run_id: str
    synced: bool

    @property
    def workdir(self) -> str:
        return f"{RUNS}/{self.run_id}" if self.synced else "."

    @property
    def state(self) -> str:
        return f"{RUNS}/{self.run_id}.state"


def wrapper(
    layout: RemoteLayout, command_line: str, env: Mapping[str, str], *, forget: bool = False
) -> str:
    """The remote shell's script for one run of `command_line` (a shell line, as ssh and
    `brev exec` take it) with `env` exported; `forget`: it removes its state when done."""
    for key in env:
        if not key.isidentifier():
            raise ValueError(f"not an environment variable name: {key!r}")
    exports = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())
    return _WRAPPER.format(
        state=shlex.quote(layout.state),
        workdir=shlex.quote(layout.workdir),
        exports=exports,
        command=shlex.quote(command_line),
        forget=_FORGET if forget else "",
    )


class RemoteCommand:
    """The user's command running through `ssh`, its output streaming straight to ours."""

    def __init__(self, session: SshSession, layout: RemoteLayout) -> None:
        self._session = session
        self._layout = layout
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, command_line: str, env: Mapping[str, str], *, forget: bool = False) -> None:
        self._process = subprocess.Popen(
            self._session.argv(wrapper(self._layout, command_line, env, forget=forget)),
            stdin=subprocess.PIPE,  # the lifeline: closed when this process goes
            stdout=None,  # inherited: no copy through Python, so no buffering and no limit
            stderr=None,
            start_new_session=True,  # a Ctrl-C reaches brev, which forwards it, not ssh
        )

    def wait(self, should_stop: Callable[[], bool], poll_s: float = 0.1) -> int | None:
        """ssh's exit code; None when `should_stop()` turned true first."""
        assert self._process is not None
        while True:
            try:
                return self._process.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                if should_stop():
                    return None

    def signal(self, signum: int, timeout: float = 10) -> bool:
        """Deliver `signum` to the command's process group on the machine; whether it went."""
        name = signal.Signals(signum).name.removeprefix("SIG")
        pid = shlex.quote(f"{self._layout.state}/pid")
        line = f'p=$(cat {pid}) && {{ kill -{name} "-$p" 2>/dev/null || kill -{name} "$p"; }}'
        try:
            return self._session.run(line, timeout=timeout).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def recorded_exit(self, timeout: float = 15) -> int | None:
        """The status the wrapper wrote, asked over a new connection: None when there is none
        (the command never finished: the connection dropped under it) or no answer."""
        path = shlex.quote(f"{self._layout.state}/exit")
        try:
            answer = self._session.run(f"cat {path}", timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        text = answer.stdout.decode(errors="replace").strip()
        return int(text) if answer.returncode == 0 and text.isdigit() else None

    def kill(self) -> None:
        """End our ssh (the lifeline then ends the remote command)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def cleanup(self, timeout: float = 15) -> None:
        """Remove the run's directories from a machine that stays (--on, --keep keeps them)."""
        paths = (self._layout.state, f"{RUNS}/{self._layout.run_id}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._session.run(f"rm -rf {' '.join(shlex.quote(p) for p in paths)}", timeout=timeout)
