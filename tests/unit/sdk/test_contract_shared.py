"""The SDK and the worker validate against the same struct definitions: uptake_sdk._contract's
files are pipeline/contract's files (links in the checkout, copies in the wheel; see
tests/integration/packaging/test_sdk_wheel.py), so their JSON Schemas and their verdicts are
the same."""

from __future__ import annotations

import msgspec
import uptake_sdk._contract.decode as sdk_decode
import uptake_sdk._contract.events as sdk_events

from pipeline.contract import decode, events
from tests.conftest import REPO

SDK_CONTRACT = REPO / "sdk" / "src" / "uptake_sdk" / "_contract"


def test_the_sdk_contract_files_are_the_workers() -> None:
    for name in ("events.py", "reasons.py", "decode.py", "cloudevents.py"):
        assert (SDK_CONTRACT / name).resolve() == (REPO / "pipeline" / "contract" / name).resolve()
        assert (SDK_CONTRACT / name).read_bytes() == (
            REPO / "pipeline/contract" / name
        ).read_bytes()


def test_same_schema_for_every_event_type() -> None:
    for event_type, struct in events.EVENT_CLASSES.items():
        twin = sdk_events.EVENT_CLASSES[event_type]
        assert twin is not struct  # two modules (one per distribution) ...
        assert msgspec.json.schema(twin) == msgspec.json.schema(struct)  # ... one definition


def test_same_verdicts() -> None:
    bad = b'{"event_type":"api_call","schema_version":1,"event_id":"x"}'
    ours = decode.BatchDecoder().decode([decode.SourceMessage("t", 0, 0, bad)])
    theirs = sdk_decode.BatchDecoder().decode([sdk_decode.SourceMessage("t", 0, 0, bad)])
    assert [(r.reason, r.detail) for r in ours.rejections] == [
        (r.reason, r.detail) for r in theirs.rejections
    ]
