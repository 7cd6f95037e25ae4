"""Pseudonymous user keys: raw user identifiers never reach ClickHouse.

A user key is BLAKE2b-128 of the identifier, keyed with a secret (`UPTAKE_PSEUDONYM_KEY`, or a
random key created once in `$UPTAKE_HOME/pseudonym.key` with mode 0600). The same user always
maps to the same key, so distinct-user counts and retention stay exact; without the key a key
cannot be turned back into an identifier, nor can an identifier be tested against it. Every
worker writing one warehouse must use the same key: `pipeline/enrich/key_fingerprint.py`
requires UPTAKE_PSEUDONYM_KEY where processes cannot share a key file and refuses a key whose
fingerprint differs from the one the warehouse recorded.

Contract of the step: pure and synchronous; `keys()` returns one key per event, "" when the event
names no user.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

KEY_BYTES = 32
PSEUDONYM_MARK = "uptake-pseudonym:"
"""Prefix of a user already replaced by its key (`pipeline.enrich.raw_user`, in dead letters):
`key_of` reads `uptake-pseudonym:<32 hex>` back as the key, so a replayed dead letter keeps
its user."""
_KEY_HEX = frozenset("0123456789abcdef")
_CACHE_LIMIT = 200_000
FINGERPRINT_LABEL = b"uptake pseudonym key fingerprint v1"


class Pseudonymizer:
    """Maps user identifiers to stable keyed hashes. Safe to share; never logs the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._key = key[:64]  # BLAKE2b takes keys of up to 64 bytes
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:
        return "Pseudonymizer(key=***)"

    def key_of(self, user: str | None) -> str:
        if not user:
            return ""
        cached = self._cache.get(user)
        if cached is None and user.startswith(PSEUDONYM_MARK):
            key = user[len(PSEUDONYM_MARK) :]
            if len(key) == 32 and _KEY_HEX.issuperset(key):
                return key
        if cached is None:
            cached = hashlib.blake2b(user.encode(), key=self._key, digest_size=16).hexdigest()
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[user] = cached
        return cached

    def fingerprint(self) -> str:
        """HMAC-SHA256 of a fixed label under the key, hex: tells keys apart, never reveals one
        (pipeline/enrich/key_fingerprint.py stores it in the warehouse)."""
        return hmac.new(self._key, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()

    def keys(self, users: Sequence[str | None]) -> list[str]:
        key_of = self.key_of
        return [key_of(user) for user in users]

    @classmethod
    def from_secret_or_file(cls, secret: str, key_file: Path) -> Pseudonymizer:
        """Use `secret` when given, else the key in `key_file`, creating it on first use."""
        if secret:
            return cls(secret.encode())
        if key_file.exists():
            return cls(bytes.fromhex(key_file.read_text().strip()))
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(key.hex() + "\n")
        return cls(key)
