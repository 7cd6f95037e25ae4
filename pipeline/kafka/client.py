"""The one place Uptake builds a faust app, and so its aiokafka consumer and producer.

`faust_app(kafka, undecodable_exit_delay_s=..., **options)` returns an unstarted `faust.App` (it
connects nothing) on the Kafka part's brokers, group, compression and security, with the
undecodable-batch hook installed: a record batch its consumer cannot decode stops the process
with the batch's coordinates and status 65 (pipeline/kafka/undecodable.py). `options` are
further `faust.App` settings and win over the defaults here. With `bulk`, the intake's topics are
drained in bulk (pipeline/kafka/bulk.py); the worker's loop takes their batches from it.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from pipeline.config.settings import KafkaSettings
from pipeline.kafka import undecodable
from pipeline.kafka.bulk import BulkIntake, BulkTransport
from pipeline.kafka.security import faust_options
from pipeline.observability.faust_sensor import UptakeMonitor

log = logging.getLogger("uptake.kafka")


def kafka_url(bootstrap: str) -> str:
    """faust's broker URL of KAFKA_BOOTSTRAP_SERVERS (`host:port,...`)."""
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


class UptakeApp(faust.App):
    """A faust app whose consumer drains `bulk_intake`'s topics in bulk, when it has one."""

    bulk_intake: BulkIntake | None = None

    def _new_transport(self) -> Any:
        if self.bulk_intake is None:
            return super()._new_transport()
        return BulkTransport(self.conf.broker_consumer, self)


def faust_app(
    kafka: KafkaSettings,
    *,
    undecodable_exit_delay_s: float,
    bulk: BulkIntake | None = None,
    **options: Any,
) -> faust.App:
    """A faust app of consumer group `kafka.consumer_group`, the undecodable hook installed."""
    for library, codecs in undecodable.missing_codecs().items():
        log.warning(
            "%s cannot decompress %s: batches compressed so will stop the worker (install %s)",
            library,
            ", ".join(codecs),
            undecodable.CODEC_LIBRARIES[library],
        )
    undecodable.install(
        undecodable.stop_worker(kafka.consumer_group, kafka.bootstrap, undecodable_exit_delay_s)
    )
    settings: dict[str, Any] = {
        "broker": kafka_url(kafka.bootstrap),
        "producer_compression_type": None if kafka.compression == "none" else kafka.compression,
        # faust's default sensor plus Uptake's metrics for commits, rebalances, full buffers.
        "Monitor": UptakeMonitor,
        **faust_options(kafka),  # UPTAKE_KAFKA_SECURITY_PROTOCOL & co.
    }
    app = UptakeApp(kafka.consumer_group, **(settings | options))
    app.bulk_intake = bulk
    return app
