"""The faust app factory: every app built through it, the worker's and the bench's, carries the
undecodable-batch hook."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka.consumer.fetcher as fetcher
import pytest

from pipeline.config.settings import Settings
from pipeline.ingest.app import build_app
from pipeline.kafka import client
from pipeline.kafka.undecodable import AttributedPartitionRecords

ORIGINAL = fetcher.PartitionRecords


@pytest.fixture
def uninstalled(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's own fetcher records, as in a fresh process (restored afterwards)."""
    monkeypatch.setattr(fetcher, "PartitionRecords", ORIGINAL)
    monkeypatch.setattr(AttributedPartitionRecords, "handler", None)


def test_a_fresh_process_has_aiokafkas_plain_records(uninstalled: None) -> None:
    """Negative control: without the factory nothing attributes an undecodable batch."""
    assert fetcher.PartitionRecords is not AttributedPartitionRecords
    assert AttributedPartitionRecords.handler is None


def test_a_worker_built_through_the_factory_has_the_hook(uninstalled: None, tmp_path: Path) -> None:
    settings = Settings.from_env({}, home=tmp_path, enabled=False, metrics_port=0)
    sink: Any = SimpleNamespace(dead_letters=None)  # build_app keeps it, reads dead_letters
    build_app(settings, sink)  # what `uptake worker` and the bench's in-process worker call
    assert fetcher.PartitionRecords is AttributedPartitionRecords
    assert callable(AttributedPartitionRecords.handler)


def test_the_factory_applies_the_kafka_part_and_lets_options_win(
    uninstalled: None, tmp_path: Path
) -> None:
    kafka = Settings.from_env({}, bootstrap="k1:9092, k2:9093", compression="none").kafka
    app = client.faust_app(kafka, undecodable_exit_delay_s=0.0, datadir=str(tmp_path))
    assert app.conf.id == "uptake-worker"
    assert [str(url) for url in app.conf.broker] == ["kafka://k1:9092", "kafka://k2:9093"]
    assert app.conf.producer_compression_type is None
    assert fetcher.PartitionRecords is AttributedPartitionRecords
