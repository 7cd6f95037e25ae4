"""Rebuilding the lifecycle state from the events table when its changelog topic was lost.

The state lives only in the compacted topic `<consumer group>-lifecycle-changelog`
(pipeline/lifecycle/state.py). When that topic is deleted, Kafka (or the worker) creates it
again empty, and the lifecycle would start from nothing: every team's next use would read as a
first use. So the worker checks at start: when the changelog topic does not exist yet and
`events` holds rows, it publishes the activity of every stored event (one record per distinct
team x capability x UTC day that counts as use, oldest day first, then a watermark of the newest
day) to the activity topic, before it consumes anything. The lifecycle agent applies those
records as it applies live ones: records are idempotent, milestones fold in ClickHouse
(ReplacingMergeTree), and the changelog is written again.

Bound: the rebuild sees what `events` still holds — api_call rows leave it after 90 days (TTL,
migration 0003), so an api_call-only history older than that is rebuilt from its last 90 days.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pipeline.lifecycle.activity import ActivityPublisher, UseOf
from pipeline.lifecycle.engine import Activity
from pipeline.lifecycle.rules import NO_DAY
from pipeline.warehouse.connection import Warehouse

log = logging.getLogger("uptake.lifecycle")

CHUNK = 10_000  # activity records per publish call

ACTIVITY_SQL = """
SELECT team, capability, event_type,
       if(event_type = 'api_call', JSONExtractString(data, 'api'), '') AS api,
       toUInt32(toDate(occurred_at)) AS day
FROM events
GROUP BY team, capability, event_type, api, day
ORDER BY day, team, capability
"""


def stored_activity(warehouse: Warehouse, uses: UseOf | None = None) -> list[Activity]:
    """Every distinct team x capability x day of `events` that counts as use, oldest first."""
    seen: set[tuple[int, str, str]] = set()
    for team, capability, event_type, api, day in warehouse.rows(ACTIVITY_SQL):
        if uses is None or uses(str(event_type), str(capability), str(api) or None):
            seen.add((int(day), str(team), str(capability)))
    return [Activity(team, capability, day) for day, team, capability in sorted(seen)]


def rebuild_from_events(
    connect: Callable[[], Warehouse],
    publisher: ActivityPublisher,
    changelog_topic: str,
    uses: UseOf | None = None,
) -> int:
    """Publish the stored activity (see the module docstring); returns the records sent."""
    with connect() as warehouse:
        events = int(warehouse.rows("SELECT count() FROM events")[0][0])
        if not events:
            return 0
        log.warning(
            "the lifecycle changelog %s does not exist but the warehouse holds %s events: "
            "rebuilding the lifecycle state from the events table",
            changelog_topic,
            f"{events:,}",
        )
        records = stored_activity(warehouse, uses)
    sent = 0
    for start in range(0, len(records), CHUNK):
        chunk = records[start : start + CHUNK]
        last = start + CHUNK >= len(records)
        newest = records[-1].day if last else NO_DAY  # the watermark after everything
        sent += publisher.publish_activity(chunk, newest)[publisher.topic]
    log.warning("lifecycle rebuild: %s activity records published", f"{sent:,}")
    return sent
