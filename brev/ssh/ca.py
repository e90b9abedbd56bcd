"""The plane's SSH certificate authority: keys, OpenSSH user certificates and fingerprints.

Pure functions over OpenSSH text (private keys, `type base64 comment` lines), built on
cryptography's SSHCertificateBuilder; no files, no subprocesses. cryptography is imported
inside the functions so that importing this module costs nothing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import struct
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from brev.errors import BrevError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    SshPrivateKey = Ed25519PrivateKey | EllipticCurvePrivateKey | RSAPrivateKey

# A box whose clock runs a little behind must still accept a certificate signed just now.
CLOCK_SKEW = timedelta(minutes=5)
# What a person's shell needs: a terminal, `ssh -L` for Jupyter and VS Code, ~/.ssh/rc.
# Agent and X11 forwarding are left out: nothing brev does needs them.
USER_EXTENSIONS = ("permit-port-forwarding", "permit-pty", "permit-user-rc")
_SSH_CURVES = {"secp256r1", "secp384r1", "secp521r1"}


class InvalidKey(BrevError):
    """A key or key line brev cannot use; the message never repeats the key."""


def new_private_key() -> str:
    """A new ed25519 private key in OpenSSH format, unencrypted."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()


def load_private_key(private_pem: str) -> SshPrivateKey:
    """An ed25519, ecdsa or rsa private key from OpenSSH or PEM text; InvalidKey otherwise."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    data = private_pem.strip().encode() + b"\n"
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key: object = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying "encrypted, and no password given"
        raise InvalidKey(
            "the key is passphrase-protected; use a key without a passphrase "
            "(remove it from a copy with: ssh-keygen -p -N '' -f COPY)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidKey(
            "the private key is not an OpenSSH or PEM private key (ed25519, ecdsa or rsa)"
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _SSH_CURVES:
        return key
    raise InvalidKey("the private key's type cannot be used with SSH; use ed25519, ecdsa or rsa")


def public_key_line(private_pem: str, comment: str = "") -> str:
    """`ssh-ed25519 AAAA... comment`: the OpenSSH public line of a private key."""
    from cryptography.hazmat.primitives import serialization

    key = load_private_key(private_pem)
    line = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"{line} {comment}" if comment else line


def parse_public_key_line(line: str) -> tuple[str, bytes]:
    """(key type, key blob) of `type base64 [comment]`; InvalidKey if the two disagree."""
    parts = line.split()
    if len(parts) < 2:
        raise InvalidKey("not an OpenSSH public key line (expected 'TYPE BASE64 [COMMENT]')")
    key_type, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey(f"the {key_type} public key line is not valid base64") from None
    # The blob starts with its own type name; a line whose two halves disagree was mangled.
    if len(blob) < 4:
        raise InvalidKey(f"the {key_type} public key line is truncated")
    (length,) = struct.unpack(">I", blob[:4])
    if blob[4 : 4 + length] != key_type.encode():
        raise InvalidKey(f"the public key line says {key_type} but its key is of another type")
    return key_type, blob


def normalized_host_keys(lines: Iterable[object]) -> list[str]:
    """`TYPE BASE64` for each line that is a well-formed public key (comments dropped, at most
    16): what may be pinned and written to a known_hosts file; anything else is left out."""
    keys: list[str] = []
    for line in lines:
        if not isinstance(line, str) or len(keys) == 16:
            continue
        try:
            key_type, blob = parse_public_key_line(line)
        except InvalidKey:
            continue
        keys.append(f"{key_type} {base64.b64encode(blob).decode()}")
    return keys


def fingerprint(public_key_line: str) -> str:
    """`SHA256:...` as `ssh-keygen -lf` prints it: base64 of the blob's SHA-256, unpadded."""
    _, blob = parse_public_key_line(public_key_line)
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def sign_user_certificate(
    ca_private_pem: str,
    public_key_line: str,
    *,
    key_id: str,
    principals: Sequence[str],
    valid_for: timedelta,
    force_command: str | None = None,
    now: datetime | None = None,
) -> str:
    """An OpenSSH user certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA...`) for
    `public_key_line`, signed by the CA key, valid for `principals` (login names) from
    `now - CLOCK_SKEW` to `now + valid_for`. `force_command` replaces whatever command the
    holder asks for (the requested one reaches it as SSH_ORIGINAL_COMMAND)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    # OpenSSH reads an empty principal list as "any user": never sign one by accident.
    if not principals or any(not p for p in principals):
        raise ValueError("a certificate needs at least one principal, none of them empty")
    if valid_for <= timedelta(0):
        raise ValueError("valid_for must be positive")
    if now is not None and now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if now is None:
        now = datetime.now(UTC)

    ca_key = load_private_key(ca_private_pem)
    parse_public_key_line(public_key_line)  # a clear InvalidKey before cryptography's errors
    try:
        subject = serialization.load_ssh_public_key(public_key_line.strip().encode())
    except (ValueError, TypeError):
        raise InvalidKey("the public key line is not a key that can be certified") from None
    if not isinstance(
        subject, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    ):
        raise InvalidKey("the public key's type cannot be certified; use ed25519, ecdsa or rsa")

    builder = (
        serialization.SSHCertificateBuilder()
        .public_key(subject)
        .serial(secrets.randbits(64))
        .type(serialization.SSHCertificateType.USER)
        .key_id(key_id.encode())
        .valid_principals([p.encode() for p in principals])
        .valid_after(int((now - CLOCK_SKEW).timestamp()))
        .valid_before(int((now + valid_for).timestamp()))
    )
    if force_command is not None:
        builder = builder.add_critical_option(b"force-command", force_command.encode())
    for name in USER_EXTENSIONS:
        builder = builder.add_extension(name.encode(), b"")
    return builder.sign(ca_key).public_bytes().decode()
