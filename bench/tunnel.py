"""What brev's SSH access costs over plain OpenSSH: throughput through `brev port-forward`
against plain `ssh -L` (same key, same config) and a direct loopback connection, and the wall
time of `brev exec NAME -- true` against `ssh -F $BREV_HOME/ssh_config NAME true`.

    .venv/bin/python bench/tunnel.py [--runs N] [--transfers N] [--mib N]

Sets up what a user has: a `brev server` (SQLite, temporary BREV_HOME), a private sshd on
127.0.0.1 trusting the plane's CA (tests/sshbox.py, as `brev register` sets one up) added as a
node, an instance `train` on it, and `brev refresh`'s ssh_config. The box is this machine, so
"the instance's 127.0.0.1" is this one's; a source process there sends --mib MiB to each
connection. Then, round-robin so machine noise hits each alike:

- transfers: --transfers rounds (default 9) of reading --mib MiB (default 256) through
  `brev port-forward train -p L:S` (OpenSSH), through plain `ssh -F ssh_config -N -L L:S
  train`, over a direct connection to S (the speed of light of this machine's loopback), and,
  for information, through `brev port-forward --paramiko` (the fallback without OpenSSH);
- commands: --runs rounds (default 15) of `brev exec train -- true` and the plain `ssh`, after
  two warm-up rounds.

Prints MiB/s and medians with the ratios and PASS/MISS against the targets (brev port-forward
at least 0.9x plain ssh -L; brev exec at most 1.3x plain ssh). Everything is bounded: the whole
run stops itself after BUDGET_S, and every server, sshd, agent and tunnel it started is stopped
however it ends. Exits 0 on PASS or MISS, 1 when it could not measure.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy roots modules at the repository; see bench/harness.py
    from bench import harness
    from tests.conftest import LiveServer
    from tests.sshbox import SshBox
else:
    import harness

REPO = Path(__file__).resolve().parents[1]
PYTHON, BREV = harness.PYTHON, harness.BREV
Abort = harness.Abort
NAME = "train"
BUDGET_S = 240.0  # the whole run, set-up included
TRANSFER_TIMEOUT_S = 60.0  # one transfer: at 256 MiB, slower than 4.3 MiB/s is a failure
TUNNEL_UP_S = 30.0
FAST = {"BREV_RECONCILE": "0", "BREV_NODE_REPORT_INTERVAL": "1", "BREV_NODE_INSTALL_WAIT": "30"}
TARGET_FORWARD = 0.9  # brev port-forward MiB/s >= 0.9 x plain ssh -L
TARGET_EXEC = 1.3  # brev exec median <= 1.3 x plain ssh

BREV_FORWARD = "brev port-forward"
PLAIN_FORWARD = "ssh -L (plain)"
DIRECT = "direct loopback"
PARAMIKO_FORWARD = "brev port-forward --paramiko"
BREV_EXEC = f"brev exec {NAME} -- true"
PLAIN_EXEC = f"ssh -F ssh_config {NAME} true"

# The source: sends MiB mebibytes to every connection, then closes it.
SOURCE = r"""
import socket, sys, threading
port, mib = int(sys.argv[1]), int(sys.argv[2])
block = b"\xa5" * (1 << 20)
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
def send(conn):
    with conn:
        for _ in range(mib):
            conn.sendall(block)
while True:
    conn, _ = server.accept()
    threading.Thread(target=send, args=(conn,), daemon=True).start()
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--runs", type=harness.positive_runs, default=15, help="rounds of exec (10-200)"
    )
    parser.add_argument("--transfers", type=int, default=9, help="rounds of transfers (1-20)")
    parser.add_argument("--mib", type=int, default=256, help="MiB per transfer (1-4096)")
    args = parser.parse_args()
    if not 1 <= args.transfers <= 20 or not 1 <= args.mib <= 4096:
        parser.error("--transfers must be 1-20 and --mib 1-4096")
    return args


# -- set-up ---------------------------------------------------------------------------------


def _run_brev(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [str(BREV), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        raise Abort(f"brev {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


@contextmanager
def instance_on_a_box(
    root: Path, plane_env: dict[str, str] = FAST, gpu: str = "h200:2"
) -> Iterator[tuple[LiveServer, SshBox, dict[str, str]]]:
    """A plane, a node box with instance NAME (`gpu`) on it, ssh_config written; the CLI's
    env. bench/run.py shares it."""
    sys.path.insert(0, str(REPO))  # bench/ is first on sys.path; tests/ is a package at REPO
    from brev.client import BrevClient
    from tests.conftest import start_server, stop_server
    from tests.sshbox import kill_agents, make_box, make_user_key

    server = start_server(root / "home", env_extra=plane_env)
    box: SshBox | None = None
    try:
        env = server.env(BREV_API_URL=server.url, BREV_TOKEN=server.admin_token, BREV_ORG="default")
        with BrevClient(server.url, server.admin_token, org="default") as client:
            ca_key = client.ssh_ca().public_key
        key, public = make_user_key(root / "admin-key")
        box = make_box(
            root / "box",
            gpus=2,
            authorized_keys=[public],
            trusted_ca=ca_key,
            principals_file=True,
        )
        address = f"root@127.0.0.1:{box.port}"
        _run_brev(env, "nodes", "add", "node", address, "--host-key", box.host_key, "--identity",
                  str(key))  # fmt: skip
        _run_brev(env, "create", gpu, "--name", NAME, "--timeout", "60s")
        _run_brev(env, "refresh")
        yield server, box, env
    finally:
        if box is not None:
            kill_agents(box.node_home)
            box.stop()
        stop_server(server)


@contextmanager
def source(port: int, mib: int) -> Iterator[None]:
    process = subprocess.Popen([str(PYTHON), "-c", SOURCE, str(port), str(mib)])
    try:
        deadline = time.monotonic() + 10
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise Abort("the data source did not start")
            time.sleep(0.05)
        yield
    finally:
        process.kill()
        process.wait()


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, found without connecting to it (a
    connection through a tunnel would start a transfer)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
        return False


@contextmanager
def tunnel(what: str, argv: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + TUNNEL_UP_S
        while not _listening(port):
            if process.poll() is not None:
                raise Abort(f"{what} exited {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise Abort(f"{what} did not listen within {TUNNEL_UP_S:.0f} s")
            time.sleep(0.05)
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# -- measuring ------------------------------------------------------------------------------


def transfer(port: int, mib: int) -> float:
    """Seconds to read `mib` MiB from 127.0.0.1:port until the sender closes."""
    expected = mib << 20
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    received = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=TRANSFER_TIMEOUT_S) as sock:
        deadline = started + TRANSFER_TIMEOUT_S
        while True:
            count = sock.recv_into(view)
            if not count:
                break
            received += count
            if time.perf_counter() > deadline:
                raise Abort(f"a transfer through port {port} ran past {TRANSFER_TIMEOUT_S:.0f} s")
    elapsed = time.perf_counter() - started
    if received != expected:
        raise Abort(f"port {port} gave {received} bytes, not {expected}")
    return elapsed


def measure_transfers(ports: dict[str, int], mib: int, rounds: int) -> dict[str, list[float]]:
    """MiB/s of each path, `rounds` times, round-robin with a rotating start."""
    names = list(ports)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # a warm-up transfer each, not counted
        transfer(ports[name], mib)
    for round_number in range(rounds):
        offset = round_number % len(names)
        for name in names[offset:] + names[:offset]:
            rates[name].append(mib / transfer(ports[name], mib))
    return rates


def _ratio_line(name: str, samples: list[float], per: float, target: str) -> str:
    value = statistics.median(samples)
    return (
        f"{name:<30}  {value:>9.1f}  {min(samples):>7.0f}  {max(samples):>7.0f}  "
        f"{value / per:>6.2f}x  {target}"
    ).rstrip()


def report(
    rates: dict[str, list[float]],
    timings: harness.Timings,
    rounds: int,
    runs: int,
    args: argparse.Namespace,
) -> None:
    print(harness.python_line())
    print(harness.machine_line())
    print(f"openssh  {_ssh_version()}")
    print(f"data     {args.mib} MiB per transfer, {args.transfers} transfers per path")
    print(harness.rounds_line(rounds, runs) + " (exec)")
    print()
    plain = statistics.median(rates[PLAIN_FORWARD])
    brev = statistics.median(rates[BREV_FORWARD])
    header = f"{'transfer':<30}  {'MiB/s':>9}  {'lowest':>7}  {'highest':>7}  {'x ssh':>7}"
    print(f"{header}  target")
    for name, samples in rates.items():
        target = ""
        if name == BREV_FORWARD:
            verdict = "PASS" if brev >= TARGET_FORWARD * plain else "MISS"
            target = f">= {TARGET_FORWARD:g}x {verdict}"
        print(_ratio_line(name, samples, plain, target))
    # Rounds run the paths back to back, so a round's ratio is less exposed to the machine's
    # load drifting during the run than the ratio of the two medians.
    paired = [b / p for b, p in zip(rates[BREV_FORWARD], rates[PLAIN_FORWARD], strict=True)]
    print(
        f"paired   brev port-forward / ssh -L per round: median {statistics.median(paired):.2f}x"
        f" (lowest {min(paired):.2f}x, highest {max(paired):.2f}x)"
    )
    print()
    width = max(len(name) for name in timings.samples)
    baseline = timings.median(PLAIN_EXEC)
    print(harness.table_header("command", width, "x ssh"))
    for name in timings.samples:
        ratio = timings.median(name) / baseline
        verdict = ""
        if name == BREV_EXEC:
            verdict = f"<= {TARGET_EXEC:g}x {'PASS' if ratio <= TARGET_EXEC else 'MISS'}"
        print(timings.row(name, width, baseline, verdict))
    print()
    print("MiB/s: median; x ssh: median / median of the plain OpenSSH path, same run.")
    print("direct loopback: no SSH at all, the ceiling of this machine; paramiko: for reference.")


def _ssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return done.stderr.strip()


def main() -> int:
    args = parse_args()
    harness.exit_on_sigterm("bench/tunnel.py: terminated; cleaning up")
    harness.require_brev()
    if shutil.which("ssh") is None:
        print("no `ssh` on PATH: this benchmark compares against OpenSSH", file=sys.stderr)
        return 1

    def out_of_time(*_: object) -> None:
        raise Abort(f"the benchmark ran past its {BUDGET_S:.0f} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(int(BUDGET_S))
    root = Path(tempfile.mkdtemp(prefix="brev-bench-tunnel-"))
    try:
        with ExitStack() as stack:
            server, _box, env = stack.enter_context(instance_on_a_box(root))
            config = str(server.home / "ssh_config")
            source_port = harness.free_port()
            stack.enter_context(source(source_port, args.mib))
            ports = {
                BREV_FORWARD: harness.free_port(),
                PLAIN_FORWARD: harness.free_port(),
                DIRECT: source_port,
                PARAMIKO_FORWARD: harness.free_port(),
            }
            forward = f"127.0.0.1:{{}}:127.0.0.1:{source_port}"
            argvs: dict[str, list[str]] = {
                BREV_FORWARD: [
                    str(BREV), "port-forward", NAME, "-p", f"{ports[BREV_FORWARD]}:{source_port}",
                ],
                PLAIN_FORWARD: [
                    "ssh", "-F", config, "-N", "-o", "ExitOnForwardFailure=yes",
                    "-L", forward.format(ports[PLAIN_FORWARD]), NAME,
                ],
                PARAMIKO_FORWARD: [
                    str(BREV), "port-forward", NAME, "--paramiko",
                    "-p", f"{ports[PARAMIKO_FORWARD]}:{source_port}",
                ],
            }  # fmt: skip
            for name, argv in argvs.items():
                log = root / f"{name.replace(' ', '_')}.log"
                stack.enter_context(tunnel(name, argv, ports[name], env, log))
            rates = measure_transfers(ports, args.mib, args.transfers)

            runners: dict[str, Callable[[], float]] = {
                PLAIN_EXEC: harness.command_runner(["ssh", "-F", config, NAME, "true"], env, root),
                BREV_EXEC: harness.command_runner([BREV, "exec", NAME, "--", "true"], env, root),
            }
            timings, rounds = harness.measure(runners, args.runs, budget_s=60.0)
        signal.alarm(0)
        report(rates, timings, rounds, args.runs, args)
        return 0
    except (Abort, RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        print(f"bench/tunnel.py: could not measure: {error}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
