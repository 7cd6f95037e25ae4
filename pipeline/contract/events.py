"""The event contract as typed msgspec structs: the decoder on the hot path validates against these.

One Kafka message carries one event (a JSON object) or a batch of events (a JSON array of
event objects); high-volume emitters batch. Every event is an envelope whose `event_type` selects
the type of its `data` body. Unknown fields are ignored, so an emitter on a newer minor revision
never breaks an older worker; new fields are always optional (additions never break old
emitters). `SUPPORTED_VERSIONS` lists the major `schema_version`s the worker accepts per type.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Name = Annotated[str, Meta(min_length=1, max_length=200)]
OptionalName = Annotated[str, Meta(max_length=200)] | None

# The name rule (docs/events.md#names) of team, service and capability names, which dashboards
# filter on: any Unicode text but control characters, the bidirectional controls, a backslash
# (ClickHouse string literals honour it), ',' '{' '}' (Grafana's multi-value form).
NAME_EXCLUDED = (
    r"\x00-\x1f\x7f-\x9f"  # control characters (Unicode category Cc)
    r"\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional controls
    r"\\,{}"
)
NAME_PATTERN = f"^[^{NAME_EXCLUDED}]*(?![\\s\\S])"
"""The rule as a pattern both Python and ECMA-262 (JSON Schema) read alike."""
_NAME_CHARACTERS = re.compile(f"[{NAME_EXCLUDED}]")
NAME_RULE = (
    "a team, service or capability name may not contain a control character, a bidirectional "
    "control, a backslash, ',', '{' or '}' (docs/events.md#names)"
)
EntityName = Annotated[str, Meta(min_length=1, max_length=200, pattern=NAME_PATTERN)]
OptionalEntityName = Annotated[str, Meta(max_length=200, pattern=NAME_PATTERN)] | None


def name_problem(value: object) -> str | None:
    """Why `value` breaks the name rule (the first excluded character and where), or None."""
    if not isinstance(value, str):
        return None
    found = _NAME_CHARACTERS.search(value)
    if found is None:
        return None
    return f"{NAME_RULE}; found {found[0]!r} at character {found.start() + 1}"


Text = Annotated[str, Meta(max_length=2000)]
UtcTime = Annotated[datetime, Meta(tz=True)]
NonNegative = Annotated[float, Meta(ge=0)]

EVENT_TYPES = ("api_call", "deploy", "model_training", "incident")
SUPPORTED_VERSIONS: dict[str, frozenset[int]] = {
    "api_call": frozenset({1}),
    "deploy": frozenset({1}),
    "model_training": frozenset({1}),
    "incident": frozenset({1}),
}


class BusinessOutcome(msgspec.Struct, frozen=True, gc=False):
    """What a business-capability API decided, e.g. a risk decision and the amount it covered."""

    name: Name
    value: float
    decision: OptionalName = None
    unit: OptionalName = None


class ApiCall(msgspec.Struct, frozen=True, gc=False):
    api: Name
    operation: Name
    status_code: Annotated[int, Meta(ge=100, le=599)]
    latency_ms: NonNegative
    outcome: BusinessOutcome | None = None


class Commit(msgspec.Struct, frozen=True, gc=False):
    sha: Annotated[str, Meta(min_length=7, max_length=64, pattern="^[0-9a-fA-F]+(?![\\s\\S])")]
    committed_at: UtcTime


class Deploy(msgspec.Struct, frozen=True, gc=False):
    deployment_id: Name
    service: EntityName
    environment: Name
    status: Literal["succeeded", "failed", "rolled_back"]
    commits: list[Commit] = []
    started_at: UtcTime | None = None


class ModelTraining(msgspec.Struct, frozen=True, gc=False):
    run_id: Name
    model: Name
    status: Literal["succeeded", "failed", "cancelled"]
    duration_s: NonNegative
    gpu_hours: NonNegative = 0.0
    registered_model: OptionalName = None


class Incident(msgspec.Struct, frozen=True, gc=False):
    incident_id: Name
    service: EntityName
    severity: Literal["sev1", "sev2", "sev3", "sev4"]
    status: Literal["opened", "resolved"]
    opened_at: UtcTime
    resolved_at: UtcTime | None = None
    caused_by_deployment: OptionalName = None


class Envelope(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="event_type"):
    """Fields every event carries. `event_id` is the dedup key."""

    event_id: uuid.UUID
    schema_version: Annotated[int, Meta(ge=1)]
    occurred_at: UtcTime
    source: Name
    capability: EntityName
    team: OptionalEntityName = None
    service: OptionalEntityName = None
    user: OptionalName = None


class ApiCallEvent(Envelope, frozen=True, tag="api_call"):
    data: ApiCall


class DeployEvent(Envelope, frozen=True, tag="deploy"):
    data: Deploy


class ModelTrainingEvent(Envelope, frozen=True, tag="model_training"):
    data: ModelTraining


class IncidentEvent(Envelope, frozen=True, tag="incident"):
    data: Incident


Event = ApiCallEvent | DeployEvent | ModelTrainingEvent | IncidentEvent
EVENT_CLASSES: dict[str, type[Envelope]] = {
    "api_call": ApiCallEvent,
    "deploy": DeployEvent,
    "model_training": ModelTrainingEvent,
    "incident": IncidentEvent,
}


def event_type_of(event: Envelope) -> str:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag
