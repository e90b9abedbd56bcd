"""Encryption at rest for what the plane must keep but never show: provider credentials.

The key is `BREV_SECRET_KEY` (a Fernet key; give every replica the same one) or, for a single
server, `$BREV_HOME/secret.key`, created 0600 on first use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from brev.errors import BrevError
from brev.home import write_private_file


class SecretsError(BrevError):
    pass


class Secrets:
    """Seals what the plane keeps but never shows (provider credentials, the SSH CA's key)
    with one Fernet key, opens it again, and derives HMAC keys from the same secret."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
            self._key = key
        except ValueError:
            raise SecretsError(
                "BREV_SECRET_KEY is not a valid key: make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            ) from None

    @classmethod
    def for_home(cls, home: Path) -> Secrets:
        configured = os.environ.get("BREV_SECRET_KEY")
        if configured:
            return cls(configured.encode())
        path = home / "secret.key"
        if not path.exists():
            write_private_file(path, Fernet.generate_key().decode() + "\n")
        return cls(path.read_text().strip().encode())

    def derivation_key(self) -> bytes:
        """A key for HMACs (derived secrets), apart from the encryption key itself."""
        import hashlib

        return hashlib.sha256(b"brev-derivation:" + self._key).digest()

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            opened: dict[str, Any] = json.loads(self._fernet.decrypt(sealed.encode()))
        except InvalidToken:
            raise SecretsError(
                "stored credentials cannot be decrypted: this server's BREV_SECRET_KEY "
                "(or $BREV_HOME/secret.key) is not the one they were stored with"
            ) from None
        return opened
