"""Bearer-token authentication of event sources.

The tokens file maps each source name to the **sha256 hex digest** of its token (or a list of
digests, to rotate a token without downtime); the collector never sees a token at rest:

```json
{"api-gateway": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
 "deploy-pipeline": ["<sha256 of the current token>", "<sha256 of the next token>"]}
```

or the same in TOML (`api-gateway = "9f86…"`). `uptake collector hash-token` prints the digest
of a token. A presented token is hashed and compared with every configured digest with
`hmac.compare_digest`, without stopping at the first match, so the time taken does not tell
which digest (or how much of one) matched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.collector.config import read_json_or_toml
from pipeline.config.settings import SettingsError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class TokensFileError(SettingsError):
    """The tokens file is missing, unreadable or malformed; the message says what to fix."""


def hash_token(token: str) -> str:
    """The sha256 hex digest of a token: what goes into the tokens file."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenTable:
    """Source name <-> token digests; `source_for(token)` authenticates a bearer token."""

    entries: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], origin: str = "tokens") -> TokenTable:
        """Build from source -> digest (or list of digests). Raises `TokensFileError`."""
        entries: list[tuple[str, bytes]] = []
        seen: dict[str, str] = {}
        for source, value in mapping.items():
            digests = value if isinstance(value, list) else [value]
            if not source or len(source) > 200:
                raise TokensFileError(f"{origin}: a source name has 1 to 200 characters")
            for digest in digests:
                if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
                    raise TokensFileError(
                        f"{origin}: the value for {source!r} must be the sha256 hex digest of its "
                        "token (64 hex digits), never the token itself; "
                        "print it with `uptake collector hash-token`"
                    )
                digest = digest.lower()
                if digest in seen and seen[digest] != source:
                    raise TokensFileError(
                        f"{origin}: {seen[digest]!r} and {source!r} share a token; "
                        "give every source its own"
                    )
                seen[digest] = source
                entries.append((source, digest.encode("ascii")))
        if not entries:
            raise TokensFileError(f"{origin}: no source is configured")
        return cls(tuple(entries))

    @classmethod
    def load(cls, path: Path) -> TokenTable:
        """Read a `.json` or `.toml` tokens file (other names are tried as JSON, then TOML)."""
        data = read_json_or_toml(path, "the tokens file", TokensFileError)
        if not isinstance(data, dict):
            raise TokensFileError(f"the tokens file {path} must map source names to digests")
        return cls.from_mapping(data, origin=str(path))

    @property
    def sources(self) -> list[str]:
        return sorted({source for source, _ in self.entries})

    def source_for(self, token: str) -> str | None:
        """The source whose digest matches `token`, else None. Compares against every entry
        with `hmac.compare_digest` (constant time per comparison, no early exit)."""
        presented = hash_token(token).encode("ascii")
        found: str | None = None
        for source, expected in self.entries:
            if hmac.compare_digest(presented, expected):
                found = source
        return found
