"""The webhook replay cache: bounded in time and in size, oldest forgotten first."""

from __future__ import annotations

import pytest

from pipeline.collector.adapters import DeliveryId, GitHubAdapter, GitLabAdapter
from pipeline.collector.replay import DeliveryCache
from tests.support.collector import FakeClock


def test_an_id_is_remembered_for_the_ttl_only() -> None:
    clock = FakeClock()
    cache = DeliveryCache(ttl_s=60, entries=10, clock=clock)
    assert cache.handled_at("a") is None
    cache.remember("a")
    clock.now += 59.9
    assert cache.handled_at("a") is not None
    clock.now += 0.1
    assert cache.handled_at("a") is None and len(cache) == 0


def test_when_full_the_oldest_id_is_forgotten_first() -> None:
    clock = FakeClock()
    cache = DeliveryCache(ttl_s=60, entries=3, clock=clock)
    for delivery in "abcd":
        cache.remember(delivery)
        clock.now += 1
    assert len(cache) == 3
    assert cache.handled_at("a") is None
    assert all(cache.handled_at(d) is not None for d in "bcd")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl_s > 0 and entries >= 1"):
        DeliveryCache(ttl_s=0, entries=1)


def test_delivery_ids_per_adapter_hashed_and_first_header_wins() -> None:
    github = GitHubAdapter("s")
    gitlab = GitLabAdapter("t")
    one = DeliveryId.of(github, {"x-github-delivery": " 72d3162e "})
    assert one is not None and one.value == "72d3162e" and one.key.startswith("github:")
    assert (
        DeliveryId.of(github, {}) is None
        and DeliveryId.of(github, {"X-GitHub-Delivery": " "}) is None
    )
    long = DeliveryId.of(github, {"X-GitHub-Delivery": "x" * 100_000})
    assert long is not None and len(long.key) == len("github:") + 32 and len(long.shown) == 100
    both = DeliveryId.of(gitlab, {"X-Gitlab-Event-UUID": "u", "Idempotency-Key": "k"})
    assert both is not None and (both.header, both.value) == ("Idempotency-Key", "k")
    same = DeliveryId.of(gitlab, {"Idempotency-Key": "72d3162e"})
    assert same is not None and same.key != one.key  # another adapter, another key
