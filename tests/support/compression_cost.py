"""What each Kafka codec costs Uptake's producers and saves on the wire (docs/benchmarks.md).

The simulator's events (JSON arrays of 100 per message, keyed by team, as `uptake simulate`
sends them) go through `make_producer` once per codec into a fresh 4-partition topic; codecs
take turns in every repetition, so they share the machine's ups and downs. Per codec:
- `produce_eps`: events/s of `produce()` (encode, send, flush with acks=all);
- `bytes_per_event`: the topic's size as the broker reports it (DescribeLogDirs) ÷ events,
  i.e. the record batches on the wire and on disk;
- `read_eps`: events/s of aiokafka (the worker's client) reading the topic back, decompressing.
Medians over the repetitions, and ratios against `none` of the same run. Prints JSON.
Run: python -m tests.support.compression_cost BOOTSTRAP [EVENTS] [REPETITIONS]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.config.settings import KAFKA_COMPRESSIONS
from pipeline.devtools.simulate.org import Organisation, generate
from pipeline.kafka.producer import make_producer, produce


def topic_bytes(admin: KafkaAdminClient, topic: str) -> int:
    total = 0
    for broker in admin.describe_log_dirs():
        for log_dir in broker["log_dirs"]:
            for entry in log_dir["topics"]:
                if entry["name"] == topic:
                    total += sum(p["partition_size"] for p in entry["partitions"])
    return total


async def read_back(bootstrap: str, topic: str, messages: int) -> float:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
    )
    await consumer.start()
    started, read = time.perf_counter(), 0
    try:
        while read < messages:
            batch = await consumer.getmany(timeout_ms=5000, max_records=10_000)
            if not batch:
                raise RuntimeError(f"{topic}: read {read} of {messages} messages")
            read += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return time.perf_counter() - started


def main(bootstrap: str, events: int, repetitions: int) -> dict[str, Any]:
    generated = list(generate(Organisation.synthetic(seed=7, teams=20), events, seed=7))
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    runs: dict[str, dict[str, list[float]]] = {
        codec: {"produce_eps": [], "bytes_per_event": [], "read_eps": []}
        for codec in KAFKA_COMPRESSIONS
    }
    try:
        for _ in range(repetitions):
            for codec in KAFKA_COMPRESSIONS:
                topic = f"bench.compression.{codec}.{uuid.uuid4().hex[:8]}"
                admin.create_topics([NewTopic(topic, 4, 1)])
                time.sleep(1)
                producer = make_producer(bootstrap, compression=codec)
                try:
                    report = produce(producer, topic, generated, per_message=100)
                finally:
                    producer.close()
                size = topic_bytes(admin, topic)
                read_s = asyncio.run(read_back(bootstrap, topic, report.messages))
                admin.delete_topics([topic])
                runs[codec]["produce_eps"].append(report.events_per_s)
                runs[codec]["bytes_per_event"].append(size / report.events)
                runs[codec]["read_eps"].append(report.events / read_s)
                print(codec, {k: round(v[-1], 1) for k, v in runs[codec].items()}, file=sys.stderr)
    finally:
        admin.close()
    median = {c: {k: statistics.median(v) for k, v in m.items()} for c, m in runs.items()}
    base = median["none"]
    return {
        "events": events,
        "repetitions": repetitions,
        "codecs": {
            codec: {
                "produce_eps": round(m["produce_eps"]),
                "bytes_per_event": round(m["bytes_per_event"], 1),
                "read_eps": round(m["read_eps"]),
                "produce_ratio": round(m["produce_eps"] / base["produce_eps"], 2),
                "bytes_ratio": round(m["bytes_per_event"] / base["bytes_per_event"], 3),
                "read_ratio": round(m["read_eps"] / base["read_eps"], 2),
            }
            for codec, m in median.items()
        },
    }


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    result = main(
        args[0], int(args[1]) if len(args) > 1 else 50_000, int(args[2]) if len(args) > 2 else 3
    )
    print(json.dumps(result))
