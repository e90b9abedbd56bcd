"""Shell scripts the plane runs on a node: `sh -s` over SSH (or locally), the script on stdin.

POSIX sh with `set -eu`; a failure prints one line to stderr and exits non-zero. Values are
baked in as quoted assignments at the top of each script, so a script's body never changes
with them. Nothing in them reads stdin except through its own redirections or here-documents:
stdin is the rest of the script.

What the install leaves on the node, under its home (`${BREV_NODE_HOME:-$HOME/.brev-node}`):

    .brev-node                  marker: uninstalling removes only a home that has it
    agent.token                 uploaded by the plane (0600)
    brev-<version>-...whl       uploaded by the plane
    venv/                       `python -m venv --without-pip`, the wheel unzipped into it
    bin/brev-agent-run          the agent's command line (systemd and the supervisor run it)
    bin/brev-agent-supervise    restarts the agent when it exits, where there is no systemd
    bin/brev-enter              `brev-enter NAME [COMMAND...]`: a shell in an instance
    bin/brev-node-uninstall     stops the agent, removes the unit and this home
    instances/NAME/.brev/env    written by the agent (brev.node.workdirs)
    agent.log, agent.pid        without systemd
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass

from brev.errors import BrevError

NO_PYTHON_EXIT = 3
SERVICE = "brev-agent"
UNIT_PATH = f"/etc/systemd/system/{SERVICE}.service"
MARKER = ".brev-node"
RESTART_DELAY_S = 5
# Files written through here-documents must not contain this line.
_END = "BREV_END_OF_FILE"


class ProbeError(BrevError):
    """The probe's output is not what `probe_script` prints."""


@dataclass(frozen=True)
class NodeFacts:
    os: str
    arch: str
    python: str  # absolute path of an interpreter >= 3.11
    python_version: str
    systemd: bool  # systemd runs the machine and we are root: the agent can be a unit
    root: bool
    node_home: str  # absolute
    hostname: str


def probe_script() -> str:
    """Prints one line of JSON about the machine (see NodeFacts); exits 3 without Python >= 3.11."""
    return _PROBE


def parse_probe(stdout: str) -> NodeFacts:
    """The facts in the probe's output; its last JSON line, past anything a profile printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    try:
        facts = json.loads(lines[-1])
        return NodeFacts(
            os=str(facts["os"]),
            arch=str(facts["arch"]),
            python=str(facts["python"]),
            python_version=str(facts["python_version"]),
            systemd=facts["systemd"] is True,
            root=facts["root"] is True,
            node_home=str(facts["node_home"]),
            hostname=str(facts["hostname"]),
        )
    except (IndexError, ValueError, KeyError, TypeError):
        raise ProbeError(f"the machine answered the probe with {stdout.strip()[:200]!r}") from None


def node_files(
    *, node_home: str, plane_url: str, interval_s: float, unit_path: str = UNIT_PATH
) -> dict[str, str]:
    """The programs of `<node_home>/bin`, by name."""
    home = _assign(NODE_HOME=node_home)
    run = _assign(NODE_HOME=node_home, PLANE_URL=plane_url, INTERVAL=f"{interval_s:g}")
    return {
        "brev-agent-run": _file(run, _AGENT_RUN),
        "brev-agent-supervise": _file(home, _SUPERVISE),
        "brev-enter": _file(home, _ENTER),
        "brev-node-uninstall": _file(
            _assign(NODE_HOME=node_home, UNIT=unit_path), _COMMON + _UNINSTALL
        ),
    }


def install_script(
    *,
    node_home: str,
    python: str,
    plane_url: str,
    interval_s: float,
    wheel_name: str,
    use_systemd: bool,
    unit_path: str = UNIT_PATH,
) -> str:
    """Installs the agent from `<node_home>/<wheel_name>` and `<node_home>/agent.token`
    (uploaded first by the caller) and starts it; over an existing install, replaces it.
    `unit_path` is for tests: systemd reads units from /etc/systemd/system."""
    for name, path in (("node_home", node_home), ("python", python)):
        if not path.startswith("/"):
            raise ValueError(f"{name} must be an absolute path, not {path!r}")
    if "/" in wheel_name or not wheel_name.endswith(".whl"):
        raise ValueError(f"not a wheel's file name: {wheel_name!r}")
    if not plane_url.startswith(("http://", "https://")):
        raise ValueError(f"the plane's URL must start with http:// or https://: {plane_url!r}")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ValueError(f"the interval must be more than zero seconds, not {interval_s}")
    files = node_files(
        node_home=node_home, plane_url=plane_url, interval_s=interval_s, unit_path=unit_path
    )
    writes = "".join(_write_program(name, text) for name, text in files.items())
    values = _assign(
        NODE_HOME=node_home,
        PYTHON=python,
        WHEEL_NAME=wheel_name,
        USE_SYSTEMD="1" if use_systemd else "0",
        UNIT=unit_path,
        UNIT_TEXT=_unit(node_home),
    )
    return "#!/bin/sh\nset -eu\n" + values + _COMMON + _INSTALL.replace("@WRITE_PROGRAMS@", writes)


def uninstall_script(node_home: str) -> str:
    """Runs `<node_home>/bin/brev-node-uninstall` where there is one; removes a home whose
    install stopped before writing it (it has the marker, it has no agent); else nothing."""
    return "#!/bin/sh\nset -eu\n" + _assign(NODE_HOME=node_home) + _UNINSTALL_ENTRY


def _assign(**values: str) -> str:
    for name, value in values.items():
        if any(ord(c) < 32 and c != "\n" for c in value) or ("\n" in value and name != "UNIT_TEXT"):
            raise ValueError(f"{name} holds a control character: {value!r}")
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def _file(values: str, body: str) -> str:
    return "#!/bin/sh\n" + values + body


def _write_program(name: str, text: str) -> str:
    """Shell that writes `$BIN/name` whole and then renames it over the old one, so a shell
    reading the old one keeps reading the old one."""
    assert _END not in text.splitlines()
    new = f'"$BIN/{name}.new"'
    return (
        f"cat > {new} <<'{_END}' || fail \"cannot write $BIN/{name}\"\n{text}{_END}\n"
        f'chmod 755 {new} && mv -f {new} "$BIN/{name}" || fail "cannot write $BIN/{name}"\n'
    )


def _unit(node_home: str) -> str:
    return (
        f"# node home: {node_home}\n"
        "[Unit]\n"
        "Description=brev agent: reports this node's GPUs to the brev control plane\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n\n"
        "[Service]\n"
        f"ExecStart={_systemd_quote(node_home + '/bin/brev-agent-run')}\n"
        "Restart=always\n"
        f"RestartSec={RESTART_DELAY_S}\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _systemd_quote(word: str) -> str:
    """One word of a unit's command line: systemd expands `%` and `$` and splits on blanks."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("%", "%%").replace("$", "$$") + '"'


_PROBE = r"""#!/bin/sh
set -eu
# The first of these that runs and is 3.11 or newer: a name on PATH may be a shim (pyenv)
# with no interpreter behind it, or an old Python.
chosen=
found=
ask='import sys; print("%d.%d.%d" % sys.version_info[:3]); sys.exit(sys.version_info < (3, 11))'
for candidate in python3.13 python3.12 python3.11 python3; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if version=$("$path" -c "$ask" 2>/dev/null </dev/null); then
        chosen=$path
        break
    fi
    found="$found${found:+, }$candidate ${version:-(does not run)}"
done
if [ -z "$chosen" ]; then
    echo "no Python 3.11 or newer on PATH (found: ${found:-none});" \
        "install python3.11 (apt-get install python3) and retry" >&2
    exit 3
fi
if [ -n "${BREV_NODE_HOME:-}" ]; then
    node_home=$BREV_NODE_HOME
elif [ -n "${HOME:-}" ]; then
    node_home=$HOME/.brev-node
else
    echo "neither BREV_NODE_HOME nor HOME is set: set BREV_NODE_HOME to brev's directory" >&2
    exit 1
fi
exec "$chosen" - "$chosen" "$node_home" <<'BREV_PROBE'
import json, os, platform, socket, sys

def os_name():
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return platform.system()
    return release.get("PRETTY_NAME") or release.get("NAME") or platform.system()

root = os.geteuid() == 0
print(json.dumps({
    "os": os_name(),
    "arch": platform.machine(),
    "python": sys.executable or sys.argv[1],
    "python_version": platform.python_version(),
    "systemd": root and os.path.isdir("/run/systemd/system"),
    "root": root,
    "node_home": os.path.abspath(sys.argv[2]),
    "hostname": socket.gethostname(),
}))
BREV_PROBE
"""

# Shared by the install and brev-node-uninstall: where things are, and stopping the agent.
_COMMON = r"""BIN=$NODE_HOME/bin
MARKER=$NODE_HOME/.brev-node
PIDFILE=$NODE_HOME/agent.pid

# The unit is this home's when it says so (one unit name per machine).
unit_is_ours() {
    [ -f "$UNIT" ] && grep -qxF "# node home: $NODE_HOME" "$UNIT" 2>/dev/null
}

# Stops brev-agent-supervise and the agent it runs, if this home's supervisor is running.
stop_supervisor() {
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
    case $pid in ''|*[!0-9]*) rm -f "$PIDFILE"; return 0 ;; esac
    # Only the process that wrote the file: a stale pid may belong to anything by now.
    if [ -r "/proc/$pid/cmdline" ] &&
        tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -qxF "$BIN/brev-agent-supervise"; then
        # It leads its own process group (setsid): the group is it, the agent and its sleeps.
        kill -TERM "-$pid" 2>/dev/null || true
        tries=0
        while kill -0 "-$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
            sleep 0.2
            tries=$((tries + 1))
        done
        kill -KILL "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
}
"""

_INSTALL = r"""VENV=$NODE_HOME/venv
WHEEL=$NODE_HOME/$WHEEL_NAME
TOKEN=$NODE_HOME/agent.token
LOG=$NODE_HOME/agent.log

fail() {
    echo "brev node install: $*" >&2
    exit 1
}
last_line() {
    printf '%s\n' "$1" | tail -n 1
}

[ -d "$NODE_HOME" ] || fail "$NODE_HOME does not exist: upload the wheel and the token first"
[ -f "$WHEEL" ] || fail "no $WHEEL: upload the wheel first"
[ -f "$TOKEN" ] || fail "no $TOKEN: upload the agent token first"
[ -x "$PYTHON" ] || fail "$PYTHON is not an executable Python"
# Uninstalling removes the home whole: only an empty directory may become one, or ours.
if [ ! -f "$MARKER" ]; then
    for entry in "$NODE_HOME"/* "$NODE_HOME"/.[!.]* "$NODE_HOME"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        case ${entry##*/} in
            # authorized_principals: sshd's list, which a machine's setup may seed (with the
            # plane's install principal) before the first install.
            agent.token | brev-*.whl | authorized_principals) ;;
            *) fail "refusing to install into $NODE_HOME: it holds ${entry##*/}," \
                "which is not brev's (use an empty directory as BREV_NODE_HOME)" ;;
        esac
    done
fi
: >"$MARKER" || fail "cannot write in $NODE_HOME"
chmod 600 "$TOKEN" || fail "cannot make $TOKEN private"

# The old agent must not run from a venv being replaced.
if unit_is_ours && command -v systemctl >/dev/null 2>&1; then
    systemctl stop brev-agent >/dev/null 2>&1 || true
fi
stop_supervisor

rm -rf "$VENV" || fail "cannot remove the old $VENV"
out=$("$PYTHON" -m venv --without-pip "$VENV" 2>&1 </dev/null) ||
    fail "cannot make a venv with $PYTHON: $(last_line "$out")"
ask='import sysconfig; print(sysconfig.get_path("purelib"))'
purelib=$("$VENV/bin/python" -c "$ask" 2>&1 </dev/null) ||
    fail "the new venv's Python does not run: $(last_line "$purelib")"
out=$("$VENV/bin/python" -m zipfile -e "$WHEEL" "$purelib" 2>&1 </dev/null) ||
    fail "cannot unpack $WHEEL: $(last_line "$out")"
# From the home: `python -m` puts the working directory first on sys.path.
out=$(cd "$NODE_HOME" && "$VENV/bin/python" -c 'import brev.agent.__main__' 2>&1 </dev/null) ||
    fail "the agent does not import from $VENV: $(last_line "$out")"
for old in "$NODE_HOME"/brev-*.whl; do
    [ "$old" = "$WHEEL" ] || rm -f "$old"
done

mkdir -p "$BIN" || fail "cannot make $BIN"
@WRITE_PROGRAMS@
cd "$NODE_HOME"
if [ "$USE_SYSTEMD" = 1 ]; then
    printf '%s' "$UNIT_TEXT" >"$UNIT" || fail "cannot write $UNIT"
    out=$({ systemctl daemon-reload && systemctl enable --now brev-agent; } 2>&1 </dev/null) ||
        fail "systemd did not start brev-agent: $(last_line "$out")"
    echo "agent started: systemd unit brev-agent"
    exit 0
fi
# A unit of this home from an earlier install would start a second agent at boot.
if unit_is_ours; then
    systemctl disable --now brev-agent >/dev/null 2>&1 </dev/null || true
    rm -f "$UNIT" || fail "cannot remove the old unit $UNIT"
fi
rm -f "$PIDFILE"
# In a session of its own, every descriptor pointing away from this script: the SSH session
# ends without waiting for it, and hangups do not reach it.
setsid nohup "$BIN/brev-agent-supervise" >>"$LOG" 2>&1 </dev/null \
    3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
tries=0
while [ ! -s "$PIDFILE" ]; do
    [ "$tries" -lt 50 ] || fail "the agent's supervisor did not start: see $LOG"
    sleep 0.1
    tries=$((tries + 1))
done
echo "agent started: supervisor pid $(cat "$PIDFILE")"
"""

_AGENT_RUN = r"""# The agent of this node, as systemd or brev-agent-supervise start it.
# The token stays in its file: never on a command line, where `ps` shows it.
# From the home: `python -m` puts the working directory first on sys.path.
cd "$NODE_HOME" || exit 1
exec "$NODE_HOME/venv/bin/python" -m brev.agent run --url "$PLANE_URL" \
    --token-file "$NODE_HOME/agent.token" --interval "$INTERVAL" --node-home "$NODE_HOME"
"""

_SUPERVISE = r"""# Keeps this node's agent running where there is no systemd:
# restarts it 5 s after it exits. Started in a session of its own (setsid):
# stopping its process group stops everything here.
set -u
LOG=$NODE_HOME/agent.log
MAX_LOG_BYTES=5000000
echo $$ >"$NODE_HOME/agent.pid"

note() {
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) brev-agent-supervise: $*"
}

# The agent appends to the log for months: keep one old copy, and truncate (the agent's
# descriptor appends, so it carries on at the start of the emptied file).
(
    while sleep 300; do
        if [ "$(wc -c <"$LOG" 2>/dev/null || echo 0)" -gt "$MAX_LOG_BYTES" ]; then
            cp "$LOG" "$LOG.1" && : >"$LOG"
        fi
    done
) &
rotator=$!
child=
trap 'kill -TERM $child $rotator 2>/dev/null; exit 0' TERM INT

while :; do
    "$NODE_HOME/bin/brev-agent-run" &
    child=$!
    status=0
    wait "$child" || status=$?
    child=
    note "the agent exited (status $status); restarting it in 5 s"
    sleep 5 &
    wait $! || true
done
"""

_ENTER = r"""# brev-enter NAME [COMMAND...]: a command or shell in instance NAME's working
# directory, with its environment (its GPUs). An SSH certificate's force-command
# brings users here.
set -eu
if [ $# -lt 1 ]; then
    echo "usage: brev-enter NAME [COMMAND...]" >&2
    exit 2
fi
name=$1
shift
dir=$NODE_HOME/instances/$name
case $name in
    '' | -* | *[!a-z0-9-]*) dir= ;;
esac
if [ -z "$dir" ] || [ ! -f "$dir/.brev/env" ]; then
    echo "no instance $name on this node" >&2
    exit 1
fi
cd "$dir"
. "$dir/.brev/env"
if [ $# -gt 0 ]; then
    exec /bin/sh -c "$*"
fi
if [ -n "${SSH_ORIGINAL_COMMAND:-}" ]; then
    # An sftp session (scp, VS Code, sshfs) through the forced command arrives as the name of
    # sshd's sftp subsystem; internal-sftp exists only inside sshd, so run the real server.
    case $SSH_ORIGINAL_COMMAND in
        internal-sftp | sftp | */sftp-server)
            for server in /usr/lib/openssh/sftp-server /usr/libexec/openssh/sftp-server \
                /usr/lib/ssh/sftp-server /usr/libexec/sftp-server; do
                if [ -x "$server" ]; then exec "$server"; fi
            done
            echo "no sftp-server on this node; use scp -O" >&2
            exit 1
            ;;
    esac
    exec "${SHELL:-/bin/sh}" -c "$SSH_ORIGINAL_COMMAND"
fi
exec "${SHELL:-/bin/sh}" -l
"""

_UNINSTALL = r"""# Stops this node's agent and removes what brev put here: the unit, and the
# home, but the home only if it has brev's marker.
set -eu
stop_supervisor
unit=0
if unit_is_ours; then
    unit=1
    systemctl disable brev-agent >/dev/null 2>&1 </dev/null || true
    rm -f "$UNIT"
    systemctl daemon-reload >/dev/null 2>&1 </dev/null || true
fi
status=0
if [ -f "$MARKER" ]; then
    rm -rf "$NODE_HOME"
    echo "removed $NODE_HOME"
else
    echo "brev-node-uninstall: $NODE_HOME has no .brev-node marker: left in place" >&2
    status=1
fi
if [ "$unit" = 1 ]; then
    # Last: stopping the unit ends every process in it, this one too when the agent ran it.
    systemctl stop brev-agent >/dev/null 2>&1 </dev/null || true
fi
exit "$status"
"""

_UNINSTALL_ENTRY = r"""if [ -f "$NODE_HOME/bin/brev-node-uninstall" ]; then
    exec /bin/sh "$NODE_HOME/bin/brev-node-uninstall" </dev/null
fi
if [ -f "$NODE_HOME/.brev-node" ]; then
    rm -rf "$NODE_HOME"
    echo "removed $NODE_HOME"
    exit 0
fi
echo "nothing of brev's at $NODE_HOME"
"""
