"""`uptake dlq replay`: re-submit dead-lettered events after a fix, without loops.

Reads the dead-letter topic with its own consumer group (`<group>-dlq-replay`) from where the
last replay stopped up to the end offsets seen at the start (so it never reads what it writes),
filters by reason, and judges every message with the current decoder:

- now valid → re-submitted to the topic it came from (keyed as the original) with an
  `uptake-replayed-from` header: the events topic, or the backfill topic for an event that was
  dead-lettered there (judged by the backfill rules, so an old event is not refused for its
  age); the worker processes it like any event;
- still invalid → published to the dead-letter topic once more with `uptake-replayed: 1` and its
  current reason; messages already marked replayed are skipped (counted as `skipped_replayed`),
  so an event that keeps failing goes back to the dead-letter topic once, never in a loop.

`--dry-run` reads and judges without producing and without committing. Offsets of the replay
group are committed only after every produced message was acknowledged.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from pipeline.config.settings import Settings
from pipeline.contract.decode import BatchDecoder, SourceMessage
from pipeline.kafka.producer import make_producer
from pipeline.kafka.security import client_kwargs
from pipeline.kafka.topics import KafkaUnavailable, unreachable_message
from pipeline.sink import dead_letters as dl


@dataclass
class ReplayReport:
    read: int = 0
    matched: int = 0
    resubmitted: int = 0
    resubmitted_backfill: int = 0  # of `resubmitted`, sent to the backfill topic
    still_invalid: int = 0
    skipped_replayed: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    still_invalid_by_reason: Counter[str] = field(default_factory=Counter)

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would be" if dry_run else "were"
        out = [
            f"read {self.read:,} dead-letter messages, {self.matched:,} matched the filter",
            f"{self.resubmitted:,} {verb} re-submitted (now valid): "
            f"{self.resubmitted - self.resubmitted_backfill:,} to the events topic, "
            f"{self.resubmitted_backfill:,} to the backfill topic",
            f"{self.still_invalid:,} {verb} still invalid and sent back to the dead-letter topic",
            f"{self.skipped_replayed:,} skipped: already replayed once",
        ]
        for reason, count in sorted(self.by_reason.items()):
            still = self.still_invalid_by_reason.get(reason, 0)
            out.append(f"  {reason:24} {count:8,} matched  {still:8,} still invalid")
        return out


def replay(
    settings: Settings,
    *,
    reasons: set[str] | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    progress: Callable[[str], None] = print,
) -> ReplayReport:
    """Replay the dead-letter topic once; see the module docstring for the rules."""
    group = f"{settings.kafka.consumer_group}-dlq-replay"
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap.split(","),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            consumer_timeout_ms=2000,
            **client_kwargs(settings.kafka),
        )
    except Exception as exc:
        raise KafkaUnavailable(unreachable_message(settings.kafka.bootstrap)) from exc
    report = ReplayReport()
    decoder = BatchDecoder(settings.ingest.limits())
    backfill_decoder = BatchDecoder(settings.ingest.limits(backfill=True))
    producer = (
        None
        if dry_run
        else make_producer(
            settings.kafka.bootstrap,
            compression=settings.kafka.compression,
            **client_kwargs(settings.kafka),
        )
    )
    publisher = (
        None if producer is None else dl.DeadLetterPublisher(producer, settings.kafka.dlq_topic)
    )
    try:
        partitions = [
            TopicPartition(settings.kafka.dlq_topic, p)
            for p in sorted(consumer.partitions_for_topic(settings.kafka.dlq_topic) or [])
        ]
        if not partitions:
            topic = settings.kafka.dlq_topic
            progress(f"the dead-letter topic {topic} does not exist yet: nothing to do")
            return report
        consumer.assign(partitions)
        end = consumer.end_offsets(partitions)
        futures = []
        deadline = time.monotonic() + 600
        done = {tp for tp in partitions if consumer.position(tp) >= end[tp]}
        while len(done) < len(partitions) and time.monotonic() < deadline:
            if limit is not None and report.matched >= limit:
                break
            fetched = consumer.poll(timeout_ms=1000, max_records=500)
            for tp, records in fetched.items():
                for record in records:
                    if record.offset >= end[tp]:
                        done.add(tp)
                        break
                    report.read += 1
                    headers = dl.read_headers(record.headers)
                    reason = headers.get(dl.REASON, "unknown")
                    if reasons and reason not in reasons:
                        continue
                    if limit is not None and report.matched >= limit:
                        break
                    report.matched += 1
                    report.by_reason[reason] += 1
                    if headers.get(dl.REPLAYED) == "1":
                        report.skipped_replayed += 1
                        continue
                    source = SourceMessage(
                        headers.get(dl.SOURCE_TOPIC, settings.kafka.events_topic),
                        int(headers.get(dl.SOURCE_PARTITION, "0") or 0),
                        int(headers.get(dl.SOURCE_OFFSET, "0") or 0),
                        record.value,
                    )
                    from_backfill = source.topic == settings.kafka.backfill_topic
                    judged = (backfill_decoder if from_backfill else decoder).decode([source])
                    if judged.rejections:
                        report.still_invalid += 1
                        report.still_invalid_by_reason[reason] += 1
                        if publisher is not None:
                            publisher.publish(judged.rejections, replayed=True)
                    else:
                        report.resubmitted += 1
                        if from_backfill:
                            report.resubmitted_backfill += 1
                        if producer is not None:
                            origin = f"{tp.topic}:{tp.partition}:{record.offset}".encode()
                            futures.append(
                                producer.send(
                                    settings.kafka.backfill_topic
                                    if from_backfill
                                    else settings.kafka.events_topic,
                                    key=record.key,
                                    value=record.value,
                                    headers=[("uptake-replayed-from", origin)],
                                )
                            )
                if consumer.position(tp) >= end[tp]:
                    done.add(tp)
        if producer is not None:
            producer.flush(timeout=60)
            failed = [f for f in futures if not f.is_done or f.failed()]
            if failed:
                raise KafkaUnavailable(
                    f"{len(failed)} re-submitted events were not acknowledged; nothing committed"
                )
            consumer.commit(
                {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in partitions}
            )
        return report
    finally:
        consumer.close()
        if producer is not None:
            producer.close()
