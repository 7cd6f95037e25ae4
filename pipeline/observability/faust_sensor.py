"""The faust internals worth a Prometheus series, recorded into Uptake's registry.

`UptakeMonitor` extends faust's default `Monitor` and records, in rare hooks only (never per
message), how long offset commits take, rebalances, and full stream buffers (backpressure).
Plug it in with `faust.App(..., Monitor=UptakeMonitor)`. Why not faust's own Prometheus
sensor: docs/design.md.
"""

from __future__ import annotations

from typing import Any

from faust.sensors import Monitor

from pipeline.observability import metrics


class UptakeMonitor(Monitor):
    """faust's Monitor plus Uptake's metrics for commits, rebalances and full stream buffers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._committed_since_initiated = False

    def on_commit_initiated(self, consumer: Any) -> Any:
        self._committed_since_initiated = False
        return super().on_commit_initiated(consumer)

    def on_tp_commit(self, tp_offsets: Any) -> None:
        # Called between initiated and completed only when offsets were really committed.
        super().on_tp_commit(tp_offsets)
        self._committed_since_initiated = True

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        super().on_commit_completed(consumer, state)
        # faust also calls the commit hooks every commit interval when there is nothing to
        # commit; those no-ops would bury the real commits in zeros.
        if self._committed_since_initiated and isinstance(state, float):
            metrics.KAFKA_COMMIT_DURATION.observe(max(0.0, self.time() - state))
        self._committed_since_initiated = False

    def on_rebalance_start(self, app: Any) -> Any:
        metrics.KAFKA_REBALANCES.inc()
        return super().on_rebalance_start(app)

    def on_topic_buffer_full(self, tp: Any) -> None:
        super().on_topic_buffer_full(tp)
        metrics.STREAM_BUFFER_FULL.inc()
