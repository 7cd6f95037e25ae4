"""The lifecycle's activity counts use as the capability catalog defines it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pipeline.catalog.capabilities import Capability, CapabilityCatalog
from pipeline.contract.decode import DecodedBatch
from pipeline.contract.events import ApiCall, ApiCallEvent, Deploy, DeployEvent, Envelope
from pipeline.lifecycle.activity import activity_of, catalog_use

AT = datetime(2026, 11, 2, 12, tzinfo=UTC)
CATALOG = CapabilityCatalog(
    (Capability("gw", None, None, frozenset({"api_call"}), apis=frozenset({"orders"})),)
)


def _call(team: str, capability: str, api: str) -> ApiCallEvent:
    data = ApiCall(api=api, operation="GET /x", status_code=200, latency_ms=1.0)
    return ApiCallEvent(
        event_id=uuid.uuid4(), schema_version=1, occurred_at=AT, source="t",
        capability=capability, team=team, data=data,
    )  # fmt: skip


def _deploy(team: str, capability: str) -> DeployEvent:
    data = Deploy(deployment_id="d1", service="s", environment="production", status="succeeded")
    return DeployEvent(
        event_id=uuid.uuid4(), schema_version=1, occurred_at=AT, source="t",
        capability=capability, team=team, data=data,
    )  # fmt: skip


def _batch(*events: Envelope) -> DecodedBatch:
    return DecodedBatch(events=list(events), teams=[e.team or "unowned" for e in events])


def test_only_use_by_the_catalog_is_activity() -> None:
    batch = _batch(
        _call("a", "gw", "orders"),  # use
        _call("b", "gw", "internal"),  # an API gw does not list
        _deploy("c", "gw"),  # an event type gw does not list
        _deploy("d", "self-managed-ci"),  # undeclared: any type counts
    )
    records, _ = activity_of(batch, catalog_use(lambda: CATALOG))
    assert [(r.team, r.capability) for r in records] == [("a", "gw"), ("d", "self-managed-ci")]
    # Negative control: without the rule every event is activity, as before.
    everything, _ = activity_of(batch)
    assert len(everything) == 4


def test_the_rule_does_not_count_undeclared_names_twice() -> None:
    catalog = CapabilityCatalog(())
    activity_of(_batch(_deploy("d", "self-managed-ci")), catalog_use(lambda: catalog))
    assert catalog.undeclared_seen() == frozenset()
