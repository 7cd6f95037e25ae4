"""What the SDK reports: to `on_error` (the default) or raised (`strict=True`).

Every error is an `UptakeError`. `InvalidEvent`: the worker would reject the event, it was not
queued. `DeliveryError`: a send failed; `dropped` says whether the events are given up (counted
as dropped) or kept for another attempt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ._contract.reasons import Reason

__all__ = ["DeliveryError", "InvalidEvent", "UptakeError"]

_PATH = re.compile(r" - at `(?P<path>[^`]*)`$")
_PATH_OF_REASON = {
    Reason.MISSING_ATTRIBUTION: "$.team",
    Reason.OCCURRED_IN_FUTURE: "$.occurred_at",
    Reason.OCCURRED_TOO_OLD: "$.occurred_at",
    Reason.UNSUPPORTED_VERSION: "$.schema_version",
    Reason.UNKNOWN_EVENT_TYPE: "$.event_type",
}


class UptakeError(Exception):
    """Base of everything the SDK reports."""


class InvalidEvent(UptakeError, ValueError):
    """The worker would reject this event; it was not queued.

    `reason` is the machine-readable reject reason (docs/events.md), `path` the JSON path of the
    offending field (`$` for the whole event), `detail` the decoder's explanation and `event`
    the event as it would have been sent.
    """

    def __init__(self, reason: Reason | str, detail: str, event: Any = None) -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.event = event
        match = _PATH.search(detail)
        self.path = match["path"] if match else _PATH_OF_REASON.get(self.reason, "$")
        text = detail[: match.start()] if match else detail
        super().__init__(f"invalid event: {self.reason.value} at {self.path}: {text}")


class DeliveryError(UptakeError, RuntimeError):
    """Events were not delivered (yet).

    `events` holds the events concerned (dicts, as sent); emitting them again is safe because
    the warehouse deduplicates by `event_id`. `dropped` is True when the SDK gave them up
    (queue full, not delivered by `close()`, refused by the collector) and False when it keeps
    them for another attempt. `errors` holds the underlying exceptions, `reason` a short code:
    `send_failed`, `queue_full`, `spool_full`, `undelivered_at_close`, `refused`.
    """

    def __init__(
        self,
        message: str,
        events: Sequence[dict[str, Any]] = (),
        errors: Sequence[BaseException] = (),
        *,
        dropped: bool = False,
        reason: str = "send_failed",
        count: int | None = None,
    ) -> None:
        super().__init__(message)
        self.events = list(events)
        self.errors = list(errors)
        self.dropped = dropped
        self.reason = reason
        self.count = len(self.events) if count is None else count
