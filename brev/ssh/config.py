"""The user's side of SSH access: a key, a certificate, `$BREV_HOME/ssh_config` with one entry
per machine, `$BREV_HOME/known_hosts` with their pinned host keys, and one `Include` line in
`~/.ssh/config` so that plain `ssh NAME`, scp, rsync and VS Code find them.

Everything here is files: no HTTP, no pydantic, so `brev exec` can check it and hand over to
`ssh` without importing either (see `cached_alias`). Imported by every `brev` start: what only
some commands need (json, fcntl) is imported where used, NamedTuples stand for dataclasses."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from brev.home import brev_home, write_private_file

KEY_NAME = "id_ed25519"
# A certificate this close to its end is renewed before use, so a session never starts with
# one that expires during the handshake.
RENEW_BEFORE = timedelta(minutes=5)
INCLUDE_MARK = "# brev: machines of `brev refresh` (remove this line and the next to opt out)"


class Entry(NamedTuple):
    """One `Host` block: what `brev.api.SshTarget` says, in plain types."""

    alias: str
    host: str
    port: int
    user: str
    host_keys: tuple[str, ...]
    status: str
    certificate: str


class Paths(NamedTuple):
    home: Path

    @property
    def keys(self) -> Path:
        return self.home / "keys"

    @property
    def key(self) -> Path:
        return self.keys / KEY_NAME

    @property
    def certificates(self) -> Path:
        return self.keys / "certs"

    def certificate(self, alias: str) -> Path:
        """The certificate for one machine (its principal only)."""
        return self.certificates / f"{alias}-cert.pub"

    @property
    def config(self) -> Path:
        return self.home / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.home / "known_hosts"

    @property
    def state(self) -> Path:
        """When the certificate ends and which aliases exist: the fast path's cache."""
        return self.home / "ssh_state.json"

    @property
    def lock(self) -> Path:
        return self.home / "ssh.lock"


def paths() -> Paths:
    return Paths(brev_home())


def ensure_key(p: Paths) -> str:
    """The user's public key line, making the key pair the first time."""
    from brev.ssh import ca

    if not p.key.exists():
        private = ca.new_private_key()
        p.keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private_file(p.key, private)
        (p.keys / f"{KEY_NAME}.pub").write_text(ca.public_key_line(private, "brev") + "\n")
    return ca.public_key_line(p.key.read_text(), "brev")


@contextmanager
def locked(p: Paths) -> Iterator[None]:
    """One writer at a time: two `brev` commands refreshing at once must not interleave."""
    import fcntl

    p.home.mkdir(parents=True, exist_ok=True)
    with p.lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def host_key_alias(alias: str) -> str:
    # The name known_hosts files the keys under: instances on one node share its host and
    # port, and an address a cloud gives to another machine later must not inherit a key.
    return f"brev-{alias}"


_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:@-]+$")


def well_formed(entry: Entry) -> bool:
    """Whether every value of the entry is a plain word: the plane validates them, and this
    file is included into ~/.ssh/config, where a value carrying a newline would be a directive
    of its own (ProxyCommand ...). Checked again here, on the side that runs ssh."""
    words = (entry.alias, entry.host, entry.user, str(entry.port))
    keys_ok = all("\n" not in k and "\r" not in k for k in entry.host_keys)
    return keys_ok and all(_SAFE_VALUE.match(w) for w in words)


def render_config(p: Paths, entries: Sequence[Entry]) -> str:
    blocks = ["# Written by `brev refresh`; rewritten each time (edits are lost)."]
    for e in entries:
        blocks.append(
            "\n".join(
                [
                    f"Host {e.alias}",
                    f"    HostName {e.host}",
                    f"    Port {e.port}",
                    f"    User {e.user}",
                    f"    IdentityFile {p.key}",
                    f"    CertificateFile {p.certificate(e.alias)}",
                    "    IdentitiesOnly yes",
                    f"    UserKnownHostsFile {p.known_hosts}",
                    f"    HostKeyAlias {host_key_alias(e.alias)}",
                    "    StrictHostKeyChecking yes",
                    "    ServerAliveInterval 15",
                    "    ServerAliveCountMax 3",
                ]
            )
        )
    return "\n\n".join(blocks) + "\n"


def render_known_hosts(entries: Sequence[Entry]) -> str:
    lines = [f"{host_key_alias(e.alias)} {key}" for e in entries for key in e.host_keys]
    return "\n".join(lines) + ("\n" if lines else "")


def write(
    p: Paths, valid_before: datetime, entries: Sequence[Entry], *, include_in_user_config: bool
) -> None:
    """Write the certificates, ssh_config, known_hosts and the cache; add the Include line.
    Certificates of machines that are gone are removed with their entries."""
    import json

    with locked(p):
        p.certificates.mkdir(parents=True, exist_ok=True, mode=0o700)
        wanted = {p.certificate(e.alias) for e in entries}
        for e in entries:
            _replace(p.certificate(e.alias), e.certificate.strip() + "\n")
        for stale in set(p.certificates.glob("*-cert.pub")) - wanted:
            stale.unlink(missing_ok=True)
        _replace(p.config, render_config(p, entries))
        _replace(p.known_hosts, render_known_hosts(entries))
        state = {
            "valid_before": valid_before.isoformat(),
            "aliases": {e.alias: e.status for e in entries},
        }
        _replace(p.state, json.dumps(state) + "\n")
        if include_in_user_config:
            add_include(p)


def _replace(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def user_config() -> Path:
    return Path(os.environ.get("HOME", str(Path.home()))) / ".ssh" / "config"


def add_include(p: Paths, config: Path | None = None) -> bool:
    """Put `Include $BREV_HOME/ssh_config` at the top of ~/.ssh/config (an Include below a Host
    block would belong to that block); True when the file changed. Never twice."""
    # Through a symlink (dotfiles managers link ~/.ssh/config): the target is the file.
    config = (config or user_config()).resolve()
    line = f"Include {p.config}"
    existing = config.read_text() if config.exists() else ""
    if any(row.strip() == line for row in existing.splitlines()):
        return False
    config.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _replace(config, f"{INCLUDE_MARK}\n{line}\n\n{existing}")
    config.chmod(0o600)
    return True


def forget_cache(p: Paths) -> None:
    """The next command asks the plane again (after a stop, a delete, a failed login)."""
    p.state.unlink(missing_ok=True)


def cached_alias(p: Paths, alias: str, now: datetime | None = None) -> bool:
    """Whether `ssh -F ssh_config ALIAS` can run right now without asking the plane: the
    certificate is valid a while yet and the alias has an entry for a running machine."""
    import json

    try:
        state = json.loads(p.state.read_text())
        valid_before = datetime.fromisoformat(state["valid_before"])
        status = state["aliases"].get(alias)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    fresh = valid_before - (now or datetime.now(UTC)) > RENEW_BEFORE
    return fresh and status in ("running", "online") and p.certificate(alias).exists()


def ssh_argv(p: Paths, alias: str, *args: str) -> list[str]:
    """OpenSSH on one of our entries, reading our config only (not ~/.ssh/config)."""
    return ["ssh", "-F", str(p.config), alias, *args]
