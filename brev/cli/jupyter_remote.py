"""The Jupyter server of `brev jupyter` on an instance (brev.cli.commands.jupyter holds the
tunnel to it).

A short Python program, sent on the stdin of `python3 -` through `brev exec`'s path (ssh on the
instance's alias, so in its working directory, with its GPUs), starts the server or finds the
one a previous `brev jupyter` started: detached in a session of its own (it outlives the SSH
session and this command), listening on the instance's 127.0.0.1 only, with a fresh random
token handed over in its environment (JUPYTER_TOKEN: never on a command line, so never in
`ps`; Jupyter logs it as `?token=...`). Its pid, port and token are kept in `.brev/jupyter.json`
(mode 0600) in the working directory; a later `brev jupyter` reuses a server that still runs.
Then the tunnel of `brev port-forward` carries a local port to it until Ctrl-C."""

from __future__ import annotations

import json
import os
from typing import Any

from brev.cli import ssh_tunnels
from brev.cli.exit_codes import SSH_FAILED
from brev.cli.output import note
from brev.errors import BrevError

# The command that starts Jupyter on the instance, instead of finding one there (or installing
# JupyterLab): `/opt/conda/bin/jupyter lab`, `python3 -m jupyter_server`. brev adds --no-browser,
# --ip, --port, --port-retries (and --allow-root as root).
COMMAND_ENV = "BREV_JUPYTER_COMMAND"
# How long a new server may take to listen (a first JupyterLab start builds caches).
START_TIMEOUT_S = 120
# The program's answer (one line of JSON) and its messages for the person, among whatever
# the instance's shell start-up files print.
ANSWER_MARK = "@@brev-jupyter "
NOTE_MARK = "@@brev-note "
ERROR_MARK = "@@brev-error "

_REMOTE = r"""
import fcntl, json, os, shlex, shutil, signal, socket, subprocess, sys, time

CONFIG = json.loads(@CONFIG@)
HOME = ".brev"
STATE = os.path.join(HOME, "jupyter.json")
LOG = os.path.join(HOME, "jupyter.log")
VENV = os.path.join(HOME, "jupyter-venv")


def say(message):
    sys.stderr.write(CONFIG["note"] + message + "\n")
    sys.stderr.flush()


def fail(message, code=1):
    sys.stderr.write(CONFIG["error"] + message.replace("\n", " ") + "\n")
    sys.exit(code)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def running(state):
    # The recorded server still runs: the pid lives, is the process we started (its command
    # line has our --port: pids are reused) and the port answers.
    try:
        pid, port = int(state["pid"]), int(state["port"])
        os.kill(pid, 0)
    except (KeyError, TypeError, ValueError, OSError):
        return False
    if os.path.isdir("/proc"):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                if ("--port=%d" % port).encode() not in handle.read().split(b"\0"):
                    return False
        except OSError:
            return False
    return listening(port)


def load():
    try:
        with open(STATE) as handle:
            state = json.load(handle)
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None


def private_open(path, flags):
    return os.open(path, flags | os.O_CREAT, 0o600)


def save(state):
    partial = STATE + ".partial"
    with os.fdopen(private_open(partial, os.O_WRONLY | os.O_TRUNC), "w") as handle:
        json.dump(state, handle)
    os.replace(partial, STATE)


def install():
    lab = os.path.abspath(os.path.join(VENV, "bin", "jupyter-lab"))
    say("No Jupyter found here: installing JupyterLab into %s (once; a minute or two) ..."
        % os.path.abspath(VENV))
    if subprocess.call([sys.executable, "-m", "venv", VENV], stdout=2) != 0:
        fail("could not make a venv with %s (Debian/Ubuntu: apt-get install python3-venv), "
             "or set BREV_JUPYTER_COMMAND" % sys.executable)
    pip = [os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "jupyterlab"]
    if subprocess.call(pip, stdout=2) != 0 or not os.access(lab, os.X_OK):
        shutil.rmtree(VENV, ignore_errors=True)
        fail("pip could not install jupyterlab on this machine (no internet?); install "
             "Jupyter there yourself or set BREV_JUPYTER_COMMAND")
    return [lab], "lab"


def command():
    if CONFIG["command"]:
        words = shlex.split(CONFIG["command"])
        names = [os.path.basename(word) for word in words]
        lab = any(name in ("jupyter-lab", "lab", "jupyterlab") for name in names)
        return words, ("lab" if lab else "server")
    lab = os.path.join(VENV, "bin", "jupyter-lab")
    if os.access(lab, os.X_OK):
        return [os.path.abspath(lab)], "lab"
    for name, kind in (("jupyter-lab", "lab"), ("jupyter-notebook", "notebook"),
                       ("jupyter-server", "server")):
        found = shutil.which(name)
        if found:
            return [found], kind
    return install()


def tail(path, lines=5):
    try:
        with open(path, "rb") as handle:
            text = handle.read()[-4000:].decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())


def start():
    argv, kind = command()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    argv = argv + ["--no-browser", "--ip=127.0.0.1", "--port=%d" % port, "--port-retries=0"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--allow-root")
    env = dict(os.environ, JUPYTER_TOKEN=CONFIG["token"])
    log = private_open(LOG, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(log, ("--- %s: starting %s\n" % (time.ctime(), " ".join(argv))).encode())
        # A session of its own: no hangup when the SSH session ends, and not a child that
        # anything here waits for.
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as error:
        fail("could not run %s: %s" % (argv[0], error.strerror or error), 127)
    finally:
        os.close(log)
    state = {"pid": process.pid, "port": port, "token": CONFIG["token"], "kind": kind}
    save(state)
    deadline = time.time() + CONFIG["timeout"]
    while not listening(port):
        if process.poll() is not None:
            os.unlink(STATE)
            fail("Jupyter exited (status %s) before it listened; the end of %s: %s"
                 % (process.returncode, os.path.abspath(LOG), tail(LOG)))
        if time.time() > deadline:
            process.kill()
            os.unlink(STATE)
            fail("Jupyter did not listen within %d s; see %s" % (CONFIG["timeout"],
                                                                 os.path.abspath(LOG)))
        time.sleep(0.1)
    return state


def stop(state):
    pid = int(state["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
    except OSError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 10
    while time.time() < deadline and running(state):
        time.sleep(0.1)
    if running(state):
        os.kill(pid, signal.SIGKILL)


def main():
    if not os.path.isdir(HOME):
        os.makedirs(HOME, mode=0o700)
    lock = private_open(os.path.join(HOME, "jupyter.lock"), os.O_WRONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)  # two `brev jupyter` at once start one server
    state = load()
    alive = state is not None and running(state)
    if CONFIG["action"] == "stop":
        if alive:
            stop(state)
        if state is not None:
            os.unlink(STATE)
        answer = {"stopped": alive}
    elif alive:
        answer = dict(state, reused=True)
    else:
        answer = dict(start(), reused=False)
    answer["directory"] = os.getcwd()
    sys.stdout.write(CONFIG["answer"] + json.dumps(answer) + "\n")


main()
"""


def remote_program(action: str, token: str, command: str, timeout: int = START_TIMEOUT_S) -> str:
    """The program `python3 -` runs on the instance (the token is in it: stdin, not argv)."""
    config = {
        "action": action,
        "token": token,
        "command": command,
        "timeout": timeout,
        "answer": ANSWER_MARK,
        "note": NOTE_MARK,
        "error": ERROR_MARK,
    }
    return _REMOTE.replace("@CONFIG@", repr(json.dumps(config)))


def on_instance(name: str, action: str, token: str, start: bool, wait: str) -> dict[str, Any]:
    """Run the program on `name`; its answer. One-line errors for whatever went wrong."""

    def show(line: str) -> None:
        if line.startswith(NOTE_MARK):
            note(line[len(NOTE_MARK) :])

    program = remote_program(action, token, os.environ.get(COMMAND_ENV, "").strip())
    _, code, out, err = ssh_tunnels.capture(
        name, "python3 -", stdin=program.encode(), start=start, wait=wait, stderr_line=show
    )
    for line in out.splitlines():
        if line.startswith(ANSWER_MARK) and code == 0:
            try:
                answer: dict[str, Any] = json.loads(line[len(ANSWER_MARK) :])
                return answer
            except ValueError:
                break
    if code == SSH_FAILED:
        raise JupyterFailed(
            code, ssh_tunnels.ssh_failure_line(name, code, ssh_tunnels.last_line(err, ""))
        )
    errors = [line[len(ERROR_MARK) :] for line in err if line.startswith(ERROR_MARK)]
    if errors:
        raise JupyterFailed(code, f"on {name}: {errors[-1]}")
    if code == 127:
        raise JupyterFailed(
            code, f"no python3 on {name}'s PATH: Jupyter needs Python there (exit 127)"
        )
    reason = ssh_tunnels.last_line([line for line in err if not line.startswith(NOTE_MARK)], "")
    raise JupyterFailed(
        code or 1,
        f"could not {action} Jupyter on {name} (exit {code}{': ' + reason if reason else ''})",
    )


class JupyterFailed(BrevError):
    """A failure with the exit code to leave with (the remote side's, or ssh's)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
