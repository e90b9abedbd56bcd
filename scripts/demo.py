"""`make demo`: the main job end to end, on embedded defaults.

Starts a control plane on SQLite in a temporary BREV_HOME, logs the CLI in, creates an org and
a CI token, lists instances as a CI job would, prints the dashboard URL, and shuts everything
down. Each step is the real `brev` command, shown as you would type it.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BREV = str(Path(sys.executable).parent / "brev")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, secret[:12] + "…")
    return text


class Demo:
    def __init__(self, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BREV_")}
        self.env["BREV_HOME"] = str(home)
        self.secrets: list[str] = []

    def step(self, title: str) -> None:
        print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}")

    def brev(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        shown: str = "",
        prints_secret: bool = False,
    ) -> str:
        print(f"$ {shown or 'brev ' + shlex.join(args)}")
        result = subprocess.run(
            [BREV, *args], env={**self.env, **(env or {})}, capture_output=True, text=True
        )
        if prints_secret and result.stdout.strip():
            self.secrets.append(result.stdout.strip())
        for stream in (result.stdout, result.stderr):
            if stream.strip():
                print(redact(stream.rstrip(), self.secrets))
        if result.returncode != 0:
            raise SystemExit(f"demo failed: `brev {shlex.join(args)}` exited {result.returncode}")
        return result.stdout


def wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"brev server exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (our own http URL)
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"brev server did not answer in 30 s:\n{log.read_text()}")


def run(home: Path) -> None:
    demo = Demo(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home.parent / "server.log"

    demo.step("Start the control plane (SQLite in a temporary BREV_HOME)")
    print(f"$ brev server --port {port}        # BREV_HOME={home}")
    with log.open("wb") as output:
        server = subprocess.Popen(
            [BREV, "server", "--port", str(port)],
            env=demo.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(url, server, log)
        print(f"listening on {url}; first start wrote the admin token to {home / 'admin-token'}")
        admin_token = (home / "admin-token").read_text().strip()
        demo.secrets.append(admin_token)

        demo.step("Log the CLI in with the one-time admin token")
        demo.brev(
            "login",
            "--url",
            url,
            "--token",
            admin_token,
            shown=f'brev login --url {url} --token "$(cat $BREV_HOME/admin-token)"',
        )
        demo.brev("whoami")

        demo.step("Create an org for the team and switch to it")
        demo.brev("org", "create", "research")
        demo.brev("org", "use", "research")
        demo.brev("org", "ls")

        demo.step("Create a token for CI, limited to this org, expiring in 30 days")
        ci_token = demo.brev(
            "token", "create", "--name", "ci", "--expires", "30d", prints_secret=True
        ).strip()
        demo.brev("token", "ls")

        demo.step("What a CI job does: no login, just environment variables")
        ci_env = {"BREV_API_URL": url, "BREV_TOKEN": ci_token, "BREV_ORG": "research"}
        demo.brev("ls", env=ci_env, shown="BREV_API_URL=... BREV_TOKEN=$CI_TOKEN brev ls")
        demo.brev(
            "ls", "--json", env=ci_env, shown="BREV_API_URL=... BREV_TOKEN=$CI_TOKEN brev ls --json"
        )

        demo.step("Dashboard")
        print(f"{url}/  (sign in with a token; API reference at {url}/docs)")
    finally:
        demo.step("Shut down")
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        graceful = "Application shutdown complete" in log.read_text()
        how = "after a graceful shutdown" if graceful else f"exit status {server.returncode}"
        print(f"control plane stopped ({how}); removing {home}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="brev-demo-") as directory:
        run(Path(directory) / "home")
    print("\ndemo complete")


if __name__ == "__main__":
    main()
