"""`make demo`: the main job end to end, on embedded defaults.

Starts a control plane on SQLite in a temporary BREV_HOME, logs the CLI in, creates an org and
a CI token, adds AWS credentials, searches offers, creates an A100 instance, lists it as a CI
job would, deletes it, registers this machine as a node (through a private sshd on a loopback
port that trusts the plane's SSH CA), runs an instance on it and a command inside that
instance with `brev exec`, runs a CI job's test run there with `brev run` and a run-scoped
token, opens the dashboard's single-use sign-in link as a browser would, and shuts
everything down. Each step is the real `brev` command, shown as you would type it. The AWS
account is moto's EC2 server (a local stand-in that speaks the EC2 API), so the demo needs no
cloud account and costs nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BREV = str(Path(sys.executable).parent / "brev")
MOTO_SERVER = str(Path(sys.executable).parent / "moto_server")


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
        # A demo leaves the user's files alone: no Include line in ~/.ssh/config.
        self.env["BREV_SSH_CONFIG"] = "0"
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

    def brev_quiet(self, *args: str) -> str:
        """A command run without showing it (polling)."""
        result = subprocess.run([BREV, *args], env=self.env, capture_output=True, text=True)
        return result.stdout


def show_dashboard_sign_in(demo: Demo, url: str) -> None:
    """`brev dashboard` as on a machine without a browser: the link it prints, traded for a
    session the way the page does it, then refused the second time."""
    link = demo.brev("dashboard", "--no-browser", prints_secret=True).strip()
    code = link.partition("#login=")[2]
    body = json.dumps({"login_code": code}).encode()
    for attempt in ("first use", "second use"):
        request = urllib.request.Request(  # noqa: S310 (our own http URL)
            f"{url}/api/v1/web/sessions",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                email = json.loads(answer.read())["email"]
                cookie = answer.headers.get("Set-Cookie", "").split(";")[1:]
                flags = ";".join(cookie).strip()
                print(f"{attempt}: signed in as {email}; cookie flags: {flags}")
        except urllib.error.HTTPError as error:
            message = json.loads(error.read())["error"]["message"]
            print(f"{attempt}: {error.code} {message}")
    print(f"dashboard: {url}/  (or paste a token there; API reference at {url}/docs)")


def wait_for(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"{url} exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (our own http URL)
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in 30 s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(home: Path) -> None:
    demo = Demo(home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = home.parent / "server.log"

    demo.step("Start a stand-in AWS (moto's EC2 server) and the control plane")
    moto_port = free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    moto_log = home.parent / "moto.log"
    with moto_log.open("wb") as output:
        moto = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(moto_port)],
            env={**demo.env, "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    print(f"moto EC2 endpoint on {moto_url}")
    print(f"$ brev server --port {port}        # BREV_HOME={home}")
    # Quick reconcile passes: the stand-in AWS answers at once, so the demo need not wait.
    plane_env = {
        **demo.env,
        "BREV_RECONCILE_INTERVAL": "0.2",
        "BREV_RECONCILE_POLL": "0.5",
        "BREV_NODE_REPORT_INTERVAL": "2",
        # moto's machines have no agent and no sshd: its "running" is taken as reachable.
        "BREV_BOOT_PROBE": "none",
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [BREV, "server", "--port", str(port)],
            env=plane_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(f"{moto_url}/moto-api/", moto, moto_log)
        wait_for(f"{url}/healthz", server, log)
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

        demo.step("Add AWS credentials to the org (checked by AWS, stored encrypted)")
        aws_env = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo-secret"}
        demo.brev(
            "provider", "add", "aws", "--endpoint-url", moto_url, env=aws_env,
            shown="AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... brev provider add aws",
        )  # fmt: skip
        demo.brev("provider", "ls")

        demo.step("Find an A100 machine, then create one")
        demo.brev("search", "a100:8", "--provider", "aws", "--region", "us-east-1")
        demo.brev(
            "create", "a100:8", "--name", "demo-a100", "--provider", "aws", "--region", "us-east-1"
        )
        demo.brev("ls")
        demo.brev("ls", "--json", env=ci_env, shown="BREV_TOKEN=$CI_TOKEN brev ls --json")

        demo.step("Give it back")
        demo.brev("delete", "demo-a100", "-y")
        deadline = time.monotonic() + 30
        while demo.brev_quiet("ls", "--json").strip() != "[]" and time.monotonic() < deadline:
            time.sleep(0.5)
        demo.brev("ls")

        register_this_machine(demo, url, admin_token, home.parent)

        demo.step("Dashboard")
        show_dashboard_sign_in(demo, url)
    finally:
        demo.step("Shut down")
        stop(server)
        stop(moto)
        graceful = "Application shutdown complete" in log.read_text()
        how = "after a graceful shutdown" if graceful else f"exit status {server.returncode}"
        print(f"control plane stopped ({how}); removing {home}")


def register_this_machine(demo: Demo, url: str, admin_token: str, workdir: Path) -> None:
    """This machine as a node: a private sshd on loopback trusts the plane's SSH CA, so the
    plane logs in with a certificate it signs itself, installs the agent (into a folder of
    the demo's), and the node's GPUs (or CPU) join the org's offers."""
    demo.step("Register this machine as a node (a private sshd trusting the plane's CA)")
    if not Path("/usr/sbin/sshd").exists():
        print(
            "skipped: no OpenSSH server here (apt-get install openssh-server; make demo "
            "installs it when run as root)"
        )
        return
    request = urllib.request.Request(  # noqa: S310 (our own http URL)
        f"{url}/api/v1/orgs/research/ssh/ca", headers={"Authorization": f"Bearer {admin_token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        ca = json.load(response)
    box = workdir / "sshd"
    box.mkdir()
    sshd = start_sshd(box, ca["public_key"], ca["install_principal"])
    try:
        user = getpass.getuser()
        demo.brev("nodes", "add", "this-machine", f"{user}@127.0.0.1:{sshd.port}", "--yes")
        demo.brev("nodes", "ls")
        gpu = "any" if shutil.which("nvidia-smi") else "cpu"
        demo.brev("create", gpu, "--name", "on-my-box", "--node", "this-machine")
        demo.brev("ls")
        demo.step("Run a command inside it: the user's own ssh, a certificate from the plane")
        inside = ["nvidia-smi"] if gpu != "cpu" else ["uname", "-a"]
        demo.brev("exec", "on-my-box", "--", *inside)
        demo.brev(
            "exec", "on-my-box", "--", "echo CUDA_VISIBLE_DEVICES=[$CUDA_VISIBLE_DEVICES] in $PWD"
        )
        print("Next, try:  brev shell on-my-box   |   brev jupyter on-my-box")
        run_a_ci_job(demo, url, gpu, workdir)
        demo.brev("delete", "on-my-box", "-y")
        demo.brev("nodes", "rm", "this-machine")
        deadline = time.monotonic() + 30
        while (box / "node").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        print("the agent uninstalled itself" if not (box / "node").exists() else "")
    finally:
        stop(sshd.process)


def run_a_ci_job(demo: Demo, url: str, gpu: str, workdir: Path) -> None:
    """What a CI job does with a GPU: one `brev run` with a token that can do nothing else."""
    demo.step("A CI job's test run: rent, sync, run, copy back, give back (brev run)")
    token = demo.brev(
        "token", "create", "--name", "ci-run", "--scope", "run", "--max-ttl", "1h",
        prints_secret=True,
    ).strip()  # fmt: skip
    project = workdir / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "check.sh").write_text('echo "tests passed on $(hostname)" > report.txt\n')
    (project / ".gitignore").write_text("*.log\n")
    (project / "debug.log").write_text("not sent\n")
    ci_env = {"BREV_API_URL": url, "BREV_TOKEN": token, "BREV_ORG": "research"}
    report = workdir / "report.txt"
    demo.brev(
        "run", gpu, "--node", "this-machine", "--workdir", str(project),
        "--out", f"report.txt:{report}", "--", "sh tests/check.sh && ls",
        env=ci_env, shown=f"BREV_TOKEN=$CI_RUN_TOKEN brev run {gpu} --out report.txt -- "
        "'sh tests/check.sh && ls'",
    )  # fmt: skip
    print(f"copied back: {report.read_text().strip()}")


class Sshd:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port


def start_sshd(box: Path, ca_key: str, install_principal: str) -> Sshd:
    """sshd on 127.0.0.1, its own host key, trusting only certificates from the plane's CA
    whose principal the node's agent lists (each instance's enters it; the plane's own lets it
    install the agent, so the demo lists that one up front); the agent goes to box/node
    (BREV_NODE_HOME), not to the real home."""
    port = free_port()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(box / "hostkey")], check=True
    )
    (box / "ca.pub").write_text(ca_key + "\n")
    (box / "node").mkdir()
    (box / "node" / "authorized_principals").write_text(install_principal + "\n")
    (box / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {box / 'hostkey'}\n"
        f"PidFile {box / 'sshd.pid'}\nTrustedUserCAKeys {box / 'ca.pub'}\n"
        f"AuthorizedPrincipalsFile {box / 'node' / 'authorized_principals'}\n"
        "AuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
        # The install's own sshd setup goes to box/etc-ssh: this sshd trusts the CA already,
        # and the machine's /etc/ssh is not the demo's to change.
        f"SetEnv BREV_NODE_HOME={box / 'node'} BREV_SSHD_CONFIG_DIR={box / 'etc-ssh'}\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd refuses to start without it
    log = box / "sshd.log"
    process = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(box / "sshd_config"), "-E", str(log)]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                print(f"sshd on 127.0.0.1:{port}, trusting the plane's CA ({box / 'ca.pub'})")
                return Sshd(process, port)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    stop(process)
    raise SystemExit(f"sshd did not start:\n{log.read_text() if log.exists() else ''}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="brev-demo-") as directory:
        run(Path(directory) / "home")
    print("\ndemo complete")


if __name__ == "__main__":
    main()
