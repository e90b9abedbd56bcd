"""The agent's install on a machine, step by step, through whatever runs commands there: the
plane's SSH connection (`brev nodes add`) or this machine's shell (`brev register`).

Each step is one shell command with stdin, so the same code serves both, and every failure is
an InstallError whose message names the machine and the step."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from brev.errors import BrevError
from brev.node import scripts

if TYPE_CHECKING:
    from brev.ssh.remote import RemoteResult


class Runner(Protocol):
    def __call__(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 300.0
    ) -> RemoteResult: ...


class InstallError(BrevError):
    pass


def probe(run: Runner, where: str) -> scripts.NodeFacts:
    """What the machine is (OS, arch, a Python >= 3.11, systemd, where the agent goes)."""
    result = run("sh -s", stdin=scripts.probe_script().encode(), timeout=60)
    if result.exit_code != 0:
        raise InstallError(f"{where}: {last_line(result.stderr)}")
    try:
        return scripts.parse_probe(result.stdout)
    except scripts.ProbeError as error:
        raise InstallError(f"{where}: {error.message}") from None


def refuse_existing(run: Runner, where: str, node_home: str) -> None:
    """An agent of brev already lives in `node_home` (this machine is a node of some org, maybe
    another's): refused before anything is written, so an install can never replace, nor its
    rollback remove, what is there."""
    home = shlex.quote(node_home)
    result = run(f"test -e {home}/.brev-node && echo installed || true", timeout=30)
    if "installed" in result.stdout:
        raise InstallError(
            f"brev's agent is already installed in {node_home} on {where}; remove that node "
            f"first (`brev nodes rm NAME`, in the org that has it), or on the machine run "
            f"{node_home}/bin/brev-node-uninstall"
        )


def install(
    run: Runner,
    where: str,
    facts: scripts.NodeFacts,
    *,
    token: str,
    plane_url: str,
    interval_s: float,
    wheel: Callable[[], tuple[str, bytes]] | None = None,
) -> None:
    """Upload this brev as a wheel and the agent's token (0600), install, start the agent."""
    from brev.node.wheel import build_wheel

    wheel_name, wheel_bytes = (wheel or build_wheel)()
    try:  # checks every value (absolute paths, the URL's scheme) before anything is written
        script = scripts.install_script(
            node_home=facts.node_home,
            python=facts.python,
            plane_url=plane_url,
            interval_s=interval_s,
            wheel_name=wheel_name,
            use_systemd=facts.systemd,
        )
    except ValueError as error:
        raise InstallError(f"cannot install on {where}: {error}") from None
    home = shlex.quote(facts.node_home)
    uploads = (
        (f"umask 077 && mkdir -p {home} && cat > {home}/{shlex.quote(wheel_name)}", wheel_bytes),
        (f"umask 077 && mkdir -p {home} && cat > {home}/agent.token", token.encode()),
    )
    for command, data in uploads:
        result = run(command, stdin=data, timeout=120)
        if result.exit_code != 0:
            raise InstallError(
                f"could not write to {facts.node_home} on {where}: {last_line(result.stderr)}"
            )
    result = run("sh -s", stdin=script.encode(), timeout=300)
    if result.exit_code != 0:
        raise InstallError(f"installing the agent on {where} failed: {last_line(result.stderr)}")


def trust_ca(run: Runner, where: str, ca_public_key: str, node_home: str) -> None:
    """Make the machine's sshd accept the plane's certificates for the principals its agent lists
    in `<node_home>/authorized_principals` (root only: it writes sshd's configuration).
    BREV_SSHD_CONFIG_DIR on the machine points it elsewhere than /etc/ssh (tests); sshd is reloaded
    only for /etc/ssh."""
    principals = shlex.quote(f"{node_home}/authorized_principals")
    script = f"""set -eu
ssh_dir=${{BREV_SSHD_CONFIG_DIR:-/etc/ssh}}
if [ "$ssh_dir" = /etc/ssh ] && [ -x /usr/sbin/sshd ]; then
    # sshd keeps the first value of each setting: a site's own user CA (Vault, Teleport) must
    # not be shadowed by ours, locking its people out. An admin merges them instead.
    for setting in trustedusercakeys authorizedprincipalsfile; do
        current=$(/usr/sbin/sshd -T 2>/dev/null | awk -v s="$setting" '$1 == s {{print $2}}')
        case $current in
            "" | none | "$ssh_dir/brev_user_ca.pub" | {principals}) ;;
            *) echo "sshd already has $setting $current: add the plane's CA and principals" \\
                "there yourself" >&2; exit 3 ;;
        esac
    done
fi
mkdir -p "$ssh_dir/sshd_config.d"
printf '%s\\n' {shlex.quote(ca_public_key.strip())} > "$ssh_dir/brev_user_ca.pub"
printf 'TrustedUserCAKeys %s\\nAuthorizedPrincipalsFile %s\\n' "$ssh_dir/brev_user_ca.pub" \\
    {principals} > "$ssh_dir/sshd_config.d/brev.conf"
if [ "$ssh_dir" = /etc/ssh ]; then
    # The system's sshd only: a HUP to every sshd would also cut other daemons' connections.
    systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null ||
        kill -HUP "$(cat /run/sshd.pid 2>/dev/null || echo none)" 2>/dev/null ||
        echo "sshd not reloaded: restart it to apply $ssh_dir/sshd_config.d/brev.conf" >&2
fi
"""
    result = run("sh -s", stdin=script.encode(), timeout=60)
    if result.exit_code != 0:
        raise InstallError(
            f"could not make sshd on {where} trust the CA: {last_line(result.stderr)}"
        )


def uninstall(run: Runner, node_home: str) -> None:
    run("sh -s", stdin=scripts.uninstall_script(node_home).encode(), timeout=60)


def agent_log_tail(run: Runner, node_home: str, lines: int = 3) -> str:
    result = run(f"tail -n {lines} {shlex.quote(node_home)}/agent.log 2>/dev/null")
    return " | ".join(line.strip() for line in result.stdout.splitlines() if line.strip())


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no error message"
