"""Pseudonymous user keys: stable per key, different across keys, not reversible without it."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from pipeline.enrich.pseudonym import Pseudonymizer


def test_the_same_user_gets_the_same_key_and_users_differ() -> None:
    p = Pseudonymizer(b"a" * 32)
    assert p.key_of("alice") == p.key_of("alice")
    assert p.key_of("alice") != p.key_of("bob")
    assert len(p.key_of("alice")) == 32
    assert p.keys(["alice", None, ""]) == [p.key_of("alice"), "", ""]


def test_keys_depend_on_the_secret() -> None:
    """Without the key, hashing a guessed identifier does not find its pseudonym."""
    key = Pseudonymizer(b"a" * 32).key_of("alice")
    assert Pseudonymizer(b"b" * 32).key_of("alice") != key
    assert hashlib.blake2b(b"alice", digest_size=16).hexdigest() != key
    assert hashlib.sha256(b"alice").hexdigest()[:32] != key


def test_the_key_never_shows_in_repr() -> None:
    assert "aaaa" not in repr(Pseudonymizer(b"a" * 32))


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Pseudonymizer(b"short")


def test_a_key_file_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "home" / "pseudonym.key"
    first = Pseudonymizer.from_secret_or_file("", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Pseudonymizer.from_secret_or_file("", path)
    assert first.key_of("alice") == again.key_of("alice")
    explicit = Pseudonymizer.from_secret_or_file("s" * 32, path)
    assert explicit.key_of("alice") != first.key_of("alice")
