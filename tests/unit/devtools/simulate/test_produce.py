"""make_producer compresses with UPTAKE_KAFKA_COMPRESSION's codec, and every producer passes it."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.collector.config import CollectorConfig
from pipeline.collector.producer import KafkaGateway
from pipeline.config.settings import Settings
from pipeline.kafka import producer as produce


class FakeProducer:
    configs: list[dict[str, Any]] = []

    def __init__(self, **config: Any) -> None:
        FakeProducer.configs.append(config)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    FakeProducer.configs = []
    monkeypatch.setattr(produce, "KafkaProducer", FakeProducer)
    return FakeProducer.configs


@pytest.mark.parametrize(
    ("codec", "compression_type"),
    [("none", None), ("gzip", "gzip"), ("snappy", "snappy"), ("lz4", "lz4"), ("zstd", "zstd")],
)
def test_make_producer_sets_kafka_pythons_compression_type(
    producers: list[dict[str, Any]], codec: str, compression_type: str | None
) -> None:
    produce.make_producer("k:9092", compression=codec)
    assert producers[-1]["compression_type"] == compression_type


def test_make_producer_compresses_by_default_with_the_settings_default(
    producers: list[dict[str, Any]],
) -> None:
    produce.make_producer("k:9092")
    assert producers[-1]["compression_type"] == Settings().kafka.compression == "lz4"


def test_make_producer_refuses_an_unknown_codec(producers: list[dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match="compression must be one of none, gzip, snappy"):
        produce.make_producer("k:9092", compression="brotli")
    assert producers == []


def test_the_collector_producer_compresses_with_the_setting(
    producers: list[dict[str, Any]],
) -> None:
    config = CollectorConfig.from_env(Settings.from_env({"UPTAKE_KAFKA_COMPRESSION": "zstd"}))
    gateway = KafkaGateway(
        config.kafka_bootstrap, config.events_topic, 1.0, compression=config.kafka_compression
    )
    gateway._connected()
    assert producers[-1]["compression_type"] == "zstd"


def test_the_sdk_compresses_as_asked(producers: list[dict[str, Any]]) -> None:
    from pipeline.sdk import UptakeClient

    client = UptakeClient("k:9092", compression="snappy")
    try:
        assert producers[-1]["compression_type"] == "snappy"
    finally:
        client.close()
