"""Helpers for tests of the webhook adapters (pipeline.collector.adapters): payloads, signatures,
mutations, and the contract check.

The payloads are real examples (see fixtures/webhooks/*/SOURCE.md); every event an adapter
produces from them must pass the worker's own decoder (`BatchDecoder`) unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.contract.events import Envelope, Event

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
DELETE = object()  # marks a path to remove in `mutated`


def fixture_bytes(name: str) -> bytes:
    """The raw bytes of a fixture file, e.g. ``github/ping.json``."""
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> dict[str, Any]:
    """A fixture decoded, as a fresh dict the test may change."""
    data = json.loads(fixture_bytes(name))
    assert isinstance(data, dict)
    return data


def sign(body: bytes, secret: str) -> str:
    """The `sha256=<hex>` HMAC signature GitHub (and the generic adapter) expect."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def mutated(data: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `data` with dotted paths set to values (or removed with DELETE)."""
    result = copy.deepcopy(data)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = result
        for key in parents:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {})
        else:
            if isinstance(node, dict):
                if value is DELETE:
                    node.pop(last, None)
                else:
                    node[last] = value
    return result


def accepted(events: list[dict[str, Any]], now: datetime) -> list[Envelope]:
    """Run `events` through the worker's decoder as one Kafka batch; all must be accepted."""
    decoder = BatchDecoder(now=lambda: now)
    batch = decoder.decode([SourceMessage("uptake.events", 0, 0, json.dumps(events).encode())])
    assert not batch.rejections, [(r.reason, r.detail) for r in batch.rejections]
    assert len(batch.events) == len(events)
    return batch.events


def assert_contract(events: list[dict[str, Any]]) -> None:
    """Every event decodes with the contract structs and names a team or a service.

    For fuzzed payloads, whose timestamps are arbitrary: the clock rules are left out.
    """
    for event in events:
        decoded = msgspec.json.decode(msgspec.json.encode(event), type=Event)
        assert decoded.team or decoded.service
