"""Consumer lag per partition: messages in Kafka that the worker has not written and committed.

    lag(partition) = log end offset (highwater) - committed offset of the consumer group

The committed offset is the next offset the group will read after a restart, and the worker
commits only after ClickHouse acknowledged a batch, so the lag counts exactly the messages whose
events are not safely in the warehouse yet: taken but still being written, buffered, or not
fetched at all.

Contract of the step: `ConsumerLagSampler.sample()` is awaited from a faust timer every few
seconds on the worker's event loop. It asks the broker for the log end offsets (a ListOffsets
request, not the value cached from the last fetch: while the worker is stuck, e.g. retrying an
insert, it stops fetching and the cached value would stop growing with the real lag), falls back
to the cached highwater when the broker does not answer in time, and never raises: a sample that
cannot be taken leaves the previous values. Partitions the worker no longer owns lose their
series, so `sum(uptake_consumer_lag_messages)` over all workers is the group's total lag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import Gauge

from pipeline.observability import metrics

log = logging.getLogger(__name__)


class LagSource(Protocol):
    """What the sampler needs of faust's consumer (`app.consumer`)."""

    def assignment(self) -> Any: ...

    def highwater(self, tp: Any) -> int | None: ...

    async def highwaters(self, *partitions: Any) -> Mapping[Any, int]: ...

    async def earliest_offsets(self, *partitions: Any) -> Mapping[Any, int]: ...


def committed_offsets(consumer: Any) -> Mapping[Any, int | None]:
    """The consumer group's committed offsets as faust's consumer knows them.

    faust keeps them in `Consumer._committed_offset` (read from Kafka when partitions are
    assigned, updated after every commit; None or missing when nothing was committed yet). It is
    private: if a faust upgrade renames it, every partition falls back to its earliest offset,
    which overstates the lag of a group that committed before; the unit tests catch the rename.
    """
    offsets = getattr(consumer, "_committed_offset", None)
    return offsets if isinstance(offsets, Mapping) else {}


class ConsumerLagSampler:
    """Sets `uptake_consumer_lag_messages{partition}` for the partitions of one topic.

    `consumer` returns faust's consumer (`lambda: app.consumer`): the app creates it when the
    worker starts, after the sampler was built.
    """

    def __init__(
        self,
        consumer: Callable[[], LagSource],
        topic: str,
        *,
        gauge: Gauge = metrics.CONSUMER_LAG,
        timeout_s: float = 5.0,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.gauge = gauge
        self.timeout_s = timeout_s
        self._exported: set[int] = set()

    async def sample(self) -> dict[int, int]:
        """Take one sample; returns lag per partition (empty when nothing is assigned)."""
        try:
            lags = await self._lags()
        except Exception as exc:  # the consumer is starting, stopping or rebalancing
            log.debug("consumer lag not sampled: %r", exc)
            return {}
        for partition, lag in lags.items():
            self.gauge.labels(str(partition)).set(lag)
        for partition in self._exported - lags.keys():
            self.gauge.remove(str(partition))
        self._exported = set(lags)
        return lags

    async def _lags(self) -> dict[int, int]:
        consumer = self.consumer()
        owned = sorted(
            (tp for tp in consumer.assignment() if tp.topic == self.topic),
            key=lambda tp: tp.partition,
        )
        if not owned:
            return {}
        try:
            ends = dict(await asyncio.wait_for(consumer.highwaters(*owned), self.timeout_s))
        except Exception as exc:
            log.debug("log end offsets not answered (%r): using the cached highwater", exc)
            ends = {}
        for tp in owned:
            if ends.get(tp) is None:
                cached = consumer.highwater(tp)
                if cached is not None:
                    ends[tp] = cached
        committed = committed_offsets(consumer)
        starts: Mapping[Any, int] = {}
        never_committed = [tp for tp in owned if not committed.get(tp)]
        if never_committed:
            # A new group reads from the earliest offset (auto_offset_reset=earliest).
            starts = await asyncio.wait_for(
                consumer.earliest_offsets(*never_committed), self.timeout_s
            )
        lags: dict[int, int] = {}
        for tp in owned:
            end = ends.get(tp)
            position = committed.get(tp) or starts.get(tp)
            if end is None or position is None:
                continue  # not known yet: no series rather than a wrong one
            lags[tp.partition] = max(0, int(end) - int(position))
        return lags
