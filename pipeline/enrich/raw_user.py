"""Pseudonymise the `user` inside a rejected event's raw bytes before they are stored.

`pseudonymise_raw` rewrites every `"user": "<identifier>"` in `Rejection.raw` to
`"user": "uptake-pseudonym:<key>"` (the keyed hash of `Pseudonymizer.key_of`) and keeps every
other byte. A key spelled with escapes is caught when the bytes parse as JSON; a user string cut
off in bytes that do not is removed with the rest. A value already marked is kept. The method and
its bound: docs/guarantees.md, "Personal data, names and webhook deliveries".
Pure CPU, never blocks, never raises for bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from pipeline.contract.decode import Rejection
from pipeline.enrich.pseudonym import PSEUDONYM_MARK, Pseudonymizer

_USER_MEMBER = re.compile(rb'("user"\s*:\s*)("(?:[^"\\]|\\.)*")')
_OPEN_USER_STRING = re.compile(rb'"user"\s*:\s*"(?!' + re.escape(PSEUDONYM_MARK.encode()) + rb")")
_ANY = msgspec.json.Decoder()
CUT_MARKER = b'..." [cut by uptake: an unterminated user string followed]'


def pseudonymise_rejections(rejections: Iterable[Rejection], pseudonyms: Pseudonymizer) -> None:
    """Rewrite each rejection's `raw` in place with `pseudonymise_raw`."""
    for rejection in rejections:
        rejection.raw = pseudonymise_raw(rejection.raw, pseudonyms)


def pseudonymise_raw(raw: bytes, pseudonyms: Pseudonymizer) -> bytes:
    """`raw` with every user identifier replaced by its marked pseudonym (module docstring)."""
    if b"user" not in raw and b"\\u" not in raw:
        return raw  # the common case: nothing to look at

    def member(match: re.Match[bytes]) -> bytes:
        try:
            user = _ANY.decode(match.group(2))
        except (msgspec.DecodeError, UnicodeDecodeError):
            user = match.group(2)[1:-1].decode("utf-8", "replace")  # invalid UTF-8 inside it
        return match.group(1) + msgspec.json.encode(_marked(user, pseudonyms))

    scrubbed = _USER_MEMBER.sub(member, raw)
    try:
        decoded = _ANY.decode(scrubbed)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        opened = _OPEN_USER_STRING.search(scrubbed)
        return scrubbed if opened is None else scrubbed[: opened.start()] + CUT_MARKER
    if _has_identifier(decoded):
        return msgspec.json.encode(_replaced(decoded, pseudonyms))
    return scrubbed


def _marked(user: str, pseudonyms: Pseudonymizer) -> str:
    if not user or user.startswith(PSEUDONYM_MARK):
        return user
    return PSEUDONYM_MARK + pseudonyms.key_of(user)


def _has_identifier(node: Any) -> bool:
    if isinstance(node, dict):
        user = node.get("user")
        if isinstance(user, str) and user and not user.startswith(PSEUDONYM_MARK):
            return True
        return any(_has_identifier(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_identifier(value) for value in node)
    return False


def _replaced(node: Any, pseudonyms: Pseudonymizer) -> Any:
    if isinstance(node, dict):
        return {
            key: _marked(value, pseudonyms)
            if key == "user" and isinstance(value, str)
            else _replaced(value, pseudonyms)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_replaced(value, pseudonyms) for value in node]
    return node
