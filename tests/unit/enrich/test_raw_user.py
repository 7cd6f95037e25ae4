"""The user inside a rejected event's raw bytes is replaced by its pseudonym before storage."""

from __future__ import annotations

import msgspec
import pytest

from pipeline.contract.decode import Rejection
from pipeline.contract.reasons import Reason
from pipeline.enrich.pseudonym import PSEUDONYM_MARK, Pseudonymizer
from pipeline.enrich.raw_user import CUT_MARKER, pseudonymise_raw, pseudonymise_rejections

P = Pseudonymizer(b"k" * 32)
ALICE = "alice@example.com"
MARKED = (PSEUDONYM_MARK + P.key_of(ALICE)).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id": "x", "user": "alice@example.com", "n": 1.0}',  # native event
        b'[{"user":"bob"}, {"user" :  "alice@example.com"}]',  # a batch
        b'{"specversion":"1.0","data":{"user":"alice@example.com"}}',  # CloudEvent
        b'{"user": "alice@example.com", "broken": ',  # not JSON: cut after the user
        b'{"user": "\\u0061lice@example.com"}',  # escapes inside the value
        b'{"\\u0075ser": "alice@example.com"}',  # escapes in the key: re-encoded
    ],
)
def test_the_identifier_is_replaced_by_its_key(raw: bytes) -> None:
    scrubbed = pseudonymise_raw(raw, P)
    assert b"alice" not in scrubbed and b"\\u0061lice" not in scrubbed
    assert MARKED in scrubbed


def test_every_other_byte_is_kept() -> None:
    raw = b'{"n": 1.0,  "user": "alice@example.com" , "x": 1e400}'
    assert pseudonymise_raw(raw, P) == raw.replace(ALICE.encode(), MARKED)


def test_an_unterminated_user_string_is_cut() -> None:
    raw = b'{"event_id": "e1", "user": "alice@exa'
    assert pseudonymise_raw(raw, P) == b'{"event_id": "e1", ' + CUT_MARKER


def test_bytes_without_a_user_are_untouched_and_marking_is_idempotent() -> None:
    for raw in (b"{broken", b'{"user": null}', b'{"user": ""}', b"\xff\xfe"):
        assert pseudonymise_raw(raw, P) == raw
    once = pseudonymise_raw(b'{"user": "alice@example.com"}', P)
    assert pseudonymise_raw(once, P) == once


def test_a_marked_user_is_read_back_as_its_key() -> None:
    """A replayed dead letter counts for the same user as the original event."""
    assert P.key_of(MARKED.decode()) == P.key_of(ALICE)
    assert P.key_of(PSEUDONYM_MARK + "not-a-key") != P.key_of(ALICE)


def test_rejections_are_rewritten_in_place_and_a_negative_control() -> None:
    raw = msgspec.json.encode({"user": ALICE, "event_type": "deploy"})
    rejection = Rejection(Reason.SCHEMA_VIOLATION, "d", raw, "t", 0, 0, 0)
    untouched = Rejection(Reason.SCHEMA_VIOLATION, "d", raw, "t", 0, 0, 0)
    pseudonymise_rejections([rejection], P)
    assert ALICE.encode() not in rejection.raw
    assert ALICE.encode() in untouched.raw  # the check above would catch a raw user
