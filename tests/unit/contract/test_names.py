"""The name rule of team, service and capability names (docs/events.md#names, issue #16 hole 6).

Dashboards filter on these names, so the contract keeps out what a query or a multi-value
variable could trip on: control characters, bidirectional controls, backslash, ',' '{' '}'.
Every other character is legal, quotes and SQL-looking text included.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.contract.events import NAME_RULE, name_problem
from pipeline.contract.reasons import Reason

EXCLUDED = ["\\", ",", "{", "}", "\x00", "\t", "\n", "\x1f", "\x7f", "\x85", "\x9f"]
EXCLUDED += ["\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"]
LEGAL = [
    "o'brien",
    "it''s",
    '"quoted"',
    "back`tick`",
    "x'; DROP TABLE events; --",
    "/* comment */ -- comment",
    "%s %(team)s $1 ? :name",
    "NULL",
    "é 漢字 🚀 \u00a0 \u200b",  # letters of any script, no-break and zero-width spaces
    "x" * 200,
]
FIELDS = ["team", "service", "capability", "data.service"]


def deploy(field: str, value: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "event_type": "deploy",
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": "ci",
        "capability": "deploy-pipeline",
        "team": "checkout",
        "service": "checkout-api",
        "data": {
            "deployment_id": "d-1",
            "service": "checkout-api",
            "environment": "production",
            "status": "succeeded",
        },
    }
    if field == "data.service":
        event["data"]["service"] = value
    else:
        event[field] = value
    return event


def judge(event: dict[str, Any]) -> tuple[int, list[tuple[Reason, str]]]:
    batch = BatchDecoder().decode([SourceMessage("t", 0, 0, json.dumps(event).encode())])
    return len(batch.events), [(r.reason, r.detail) for r in batch.rejections]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("character", EXCLUDED, ids=[hex(ord(c)) for c in EXCLUDED])
def test_an_excluded_character_is_rejected_with_the_rule(field: str, character: str) -> None:
    accepted, rejections = judge(deploy(field, f"check{character}out"))
    assert accepted == 0
    [(reason, detail)] = rejections
    assert reason is Reason.SCHEMA_VIOLATION
    assert detail == f"{NAME_RULE}; found {character!r} at character 6 - at `$.{field}`"


@pytest.mark.parametrize("field", FIELDS)
def test_every_legal_kind_of_character_is_accepted(field: str) -> None:
    for name in LEGAL:
        assert name_problem(name) is None
        assert judge(deploy(field, name)) == (1, []), name


def test_other_free_text_fields_keep_every_character() -> None:
    """The rule is for the names dashboards filter on; ids, environments and users are free."""
    event = deploy("team", "checkout")
    event["user"] = "dom\\ain,user"
    event["data"]["deployment_id"] = "d\\1,{2}"
    event["data"]["environment"] = "prod\\eu"
    assert judge(event) == (1, [])
