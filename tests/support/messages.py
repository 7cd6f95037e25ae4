"""Kafka message values for tests that feed the decoder and the sink directly."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

IDS = uuid.UUID("6f1d2c3b-0a9e-4f8d-b7c6-5e4d3c2b1a00")


def api_call_messages(count: int, per_message: int, teams: int, seed: int = 1) -> list[bytes]:
    """`count` valid api_call events occurring now, as JSON arrays of `per_message` events.

    Event `i` is owned by team-<i mod teams>, used by user-<i>, and has an id derived from
    (`seed`, `i`): the same call returns the same events, as an emitter's re-send would.
    """
    now = datetime.now(UTC).isoformat()
    events = [
        {
            "event_id": str(uuid.uuid5(IDS, f"{seed}/{i}")),
            "event_type": "api_call",
            "schema_version": 1,
            "occurred_at": now,
            "source": "tests",
            "capability": "api-gateway",
            "team": f"team-{i % teams}",
            "user": f"user-{i}",
            "data": {"api": "orders", "operation": "GET /o", "status_code": 200, "latency_ms": 1},
        }
        for i in range(count)
    ]
    return [
        json.dumps(events[start : start + per_message]).encode()
        for start in range(0, count, per_message)
    ]
