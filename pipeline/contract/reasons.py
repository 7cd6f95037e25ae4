"""The fixed set of machine-readable reasons an event is rejected for.

A reason code is part of the contract: dashboards, alerts and `uptake dlq replay --reason` key on
it, so codes are only ever added, never renamed. `docs/events.md` documents each.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    NOT_JSON = "not_json"
    """The message is not valid UTF-8 JSON."""
    TOO_LARGE = "too_large"
    """The message is larger than UPTAKE_MAX_MESSAGE_BYTES."""
    EMPTY_BATCH = "empty_batch"
    """The message is an empty JSON array: it carries no event."""
    SCHEMA_VIOLATION = "schema_violation"
    """A field is missing, of the wrong type or out of range; the detail names its path."""
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    """`event_type` is not one the worker knows."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """`schema_version` is not a version the worker knows for that event type."""
    MISSING_ATTRIBUTION = "missing_attribution"
    """Neither `team` nor `service` is given: the event cannot be attributed."""
    OCCURRED_IN_FUTURE = "occurred_at_in_future"
    """`occurred_at` lies further in the future than UPTAKE_MAX_FUTURE_SKEW_S."""
    OCCURRED_TOO_OLD = "occurred_at_too_old"
    """`occurred_at` is older than UPTAKE_MAX_LATENESS_S; load those with `uptake backfill`."""
    INTERNAL_ERROR = "internal_error"
    """A step of the worker raised an unexpected error on this message (a bug, not bad input);
    the detail names the exception type. The message is dead-lettered; the rest of its batch
    is written (docs/guarantees.md, "A message that makes a step raise")."""
