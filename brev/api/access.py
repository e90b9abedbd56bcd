"""SSH access: the plane's CA and the per-machine certificates of `brev refresh`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from brev.api.base import _Model


class SshCa(_Model):
    public_key: str = Field(description="put in sshd's TrustedUserCAKeys to let brev users in")
    install_principal: str = Field(
        description="the principal of the plane's own certificates (agent installs)"
    )


class SshTarget(_Model):
    """One machine a user may log in to, as `brev refresh` writes it into ssh_config."""

    alias: str = Field(description="what `ssh ALIAS` takes: the instance's name, node-NAME")
    kind: Literal["instance", "node"]
    name: str
    status: str
    host: str | None = Field(description="null: not reachable yet (no address)")
    port: int
    user: str | None
    host_keys: list[str] = Field(description="pinned; empty until the agent reported them")
    principal: str = Field(description="the one principal its certificate carries")
    certificate: str = Field(description="OpenSSH user certificate for the key sent")


class SshCertificateRequest(_Model):
    public_key: Annotated[str, Field(min_length=20, max_length=16384)] = Field(
        description="the user's OpenSSH public key line"
    )


class SshCertificate(_Model):
    """A certificate per machine: each carries that machine's principal only, because a node
    hosting several instances chooses which one a session enters by the principal."""

    valid_before: datetime
    targets: list[SshTarget]
