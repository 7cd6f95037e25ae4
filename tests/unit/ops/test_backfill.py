"""`uptake backfill` without a broker: line parsing, gzip, bad lines, dry run, exit codes, help;
and the worker's per-topic decoding of the backfill topic."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.cli import main
from pipeline.config.settings import KafkaSettings, Settings, SettingsError
from pipeline.contract.decode import BatchDecoder, Limits, SourceMessage
from pipeline.ingest.steps import Progress, decode_by_topic, record
from pipeline.observability import metrics
from pipeline.ops.backfill import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    BackfillError,
    BackfillReport,
    Spool,
    Ticker,
    run_backfill,
    send_spool,
)

NOW = datetime.now(UTC)


def event(i: int, age: timedelta, team: str | None = "payments", **extra: Any) -> dict[str, Any]:
    body = {
        "event_id": str(uuid.UUID(int=i + 1)),
        "event_type": "api_call",
        "schema_version": 1,
        "occurred_at": (NOW - age).isoformat(),
        "source": "gateway",
        "capability": "api-gateway",
        "team": team,
        "data": {
            "api": "orders",
            "operation": "GET /v1/orders",
            "status_code": 200,
            "latency_ms": 4,
        },
    }
    body.update(extra)
    return body


def jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def settings(**env: str) -> Settings:
    return Settings.from_env({"UPTAKE_HOME": "/nonexistent", **env})


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("UPTAKE_BACKFILL_TOPIC", "UPTAKE_EVENTS_TOPIC", "UPTAKE_BACKFILL_MAX_AGE_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("UPTAKE_HOME", str(tmp_path / "home"))
    return tmp_path


# --- settings --------------------------------------------------------------------------------


def test_the_backfill_topic_follows_the_events_topic_unless_set() -> None:
    assert settings().kafka.backfill_topic == "uptake.events.backfill"
    assert settings(UPTAKE_EVENTS_TOPIC="ev").kafka.backfill_topic == "ev.backfill"
    assert settings(UPTAKE_BACKFILL_TOPIC="old").kafka.backfill_topic == "old"
    assert Settings(kafka=KafkaSettings(events_topic="x")).kafka.backfill_topic == "x.backfill"
    with pytest.raises(SettingsError, match="UPTAKE_BACKFILL_TOPIC must differ"):
        settings(UPTAKE_EVENTS_TOPIC="ev", UPTAKE_BACKFILL_TOPIC="ev")


def test_the_backfill_age_limit_is_bounded_by_what_one_insert_can_hold() -> None:
    assert settings().ingest.backfill_max_age_s == 730 * 86400
    for bad in ("0", "-5", str(2501 * 86400)):
        with pytest.raises(SettingsError, match="UPTAKE_BACKFILL_MAX_AGE_S"):
            settings(UPTAKE_BACKFILL_MAX_AGE_S=bad)


# --- the limits: live topic vs backfill topic -------------------------------------------------


def test_the_live_limit_rejects_old_events_and_says_how_to_backfill() -> None:
    old = msgspec.json.encode(event(1, timedelta(days=30)))
    live = BatchDecoder(Limits()).decode([SourceMessage("live", 0, 0, old)])
    [rejection] = live.rejections
    assert rejection.reason == "occurred_at_too_old"
    assert "more than 7 days ago" in rejection.detail
    assert "UPTAKE_MAX_LATENESS_S" in rejection.detail
    assert "uptake backfill" in rejection.detail

    backfill = BatchDecoder(settings().ingest.limits(backfill=True)).decode(
        [SourceMessage("b", 0, 0, old)]
    )
    assert len(backfill.events) == 1 and not backfill.rejections


def test_the_backfill_limits_keep_the_future_skew_and_their_own_age_limit() -> None:
    limits = settings(UPTAKE_BACKFILL_MAX_AGE_S=str(40 * 86400)).ingest.limits(backfill=True)
    messages = [
        SourceMessage("b", 0, 0, msgspec.json.encode(event(1, timedelta(days=39)))),
        SourceMessage("b", 0, 1, msgspec.json.encode(event(2, timedelta(days=41)))),
        SourceMessage("b", 0, 2, msgspec.json.encode(event(3, -timedelta(hours=1)))),
    ]
    batch = BatchDecoder(limits).decode(messages)
    assert len(batch.events) == 1
    reasons = {r.offset: r for r in batch.rejections}
    assert reasons[1].reason == "occurred_at_too_old"
    assert "40 days" in reasons[1].detail and "UPTAKE_BACKFILL_MAX_AGE_S" in reasons[1].detail
    assert reasons[2].reason == "occurred_at_in_future"


def test_the_worker_decodes_each_topic_with_its_own_limits() -> None:
    old = msgspec.json.encode(event(1, timedelta(days=30)))
    fresh = msgspec.json.encode([event(2, timedelta(hours=1)), event(3, timedelta(hours=2))])
    live, backfill = BatchDecoder(Limits()), BatchDecoder(settings().ingest.limits(backfill=True))
    messages = [
        SourceMessage("live", 0, 5, old),
        SourceMessage("old", 1, 7, old),
        SourceMessage("live", 0, 6, fresh),
        SourceMessage("old", 1, 8, fresh),
    ]
    batch = decode_by_topic(messages, live, {"old": backfill})
    assert batch.consumed == 6
    assert [r.topic for r in batch.rejections] == ["live"]
    assert batch.rejections[0].reason == "occurred_at_too_old"
    # Parallel lists stay aligned, and each topic's offsets keep their order.
    assert list(zip(batch.topics, batch.partitions, batch.offsets, strict=True)) == [
        ("live", 0, 6),
        ("live", 0, 6),
        ("old", 1, 7),
        ("old", 1, 8),
        ("old", 1, 8),
    ]
    assert [e.event_id.int - 1 for e in batch.events] == [2, 3, 1, 2, 3]
    # A batch of one topic takes the single-call path of that topic's decoder.
    only_old = decode_by_topic([SourceMessage("old", 0, 0, old)], live, {"old": backfill})
    assert len(only_old.events) == 1


def test_backfilled_events_stay_out_of_the_event_delay_histogram(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    observed: list[float] = []

    class Recorder:
        def observe(self, amount: float) -> None:
            observed.append(amount)

    monkeypatch.setattr(metrics, "EVENT_DELAY", Recorder())
    old = msgspec.json.encode(event(1, timedelta(days=30)))
    fresh = msgspec.json.encode(event(2, timedelta(seconds=10)))
    batch = decode_by_topic(
        [SourceMessage("live", 0, 0, fresh), SourceMessage("old", 0, 0, old)],
        BatchDecoder(),
        {"old": BatchDecoder(settings().ingest.limits(backfill=True))},
    )
    record(batch, Progress(), backfill_topic="old")
    assert len(observed) == 1 and observed[0] < 3600  # the fresh one (NOW is set at import)
    observed.clear()
    record(batch, Progress())  # without the topic both count: the filter is what keeps it out
    assert len(observed) == 2


# --- validation: lines, gzip, stdin, bad lines ------------------------------------------------


def test_a_valid_file_passes_a_dry_run(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = cli_env / "old.jsonl"
    path.write_bytes(jsonl([event(i, timedelta(days=30 + i)) for i in range(25)]))
    assert main(["backfill", "--dry-run", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "read 25 lines from 1 file" in out and "25 valid, 0 invalid" in out
    assert "dry run: nothing was sent" in out


def test_gzip_is_recognised_by_its_content(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = jsonl([event(i, timedelta(days=40)) for i in range(10)])
    (cli_env / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (cli_env / "b.jsonl").write_bytes(gzip.compress(data))  # gzip without the suffix
    (cli_env / "c.jsonl").write_bytes(data.replace(b"\n", b"\r\n"))  # Windows line ends
    names = [str(cli_env / n) for n in ("a.jsonl.gz", "b.jsonl", "c.jsonl")]
    assert main(["backfill", "--dry-run", *names]) == EXIT_OK
    assert "read 30 lines from 3 files" in capsys.readouterr().out


def test_stdin_is_read_with_a_dash() -> None:
    data = gzip.compress(jsonl([event(i, timedelta(days=50)) for i in range(3)]))
    report = run_backfill(
        settings(), ["-"], dry_run=True, stdin=io.BufferedReader(io.BytesIO(data))
    )
    assert (report.lines, report.valid, report.invalid, report.exit_code) == (3, 3, 0, EXIT_OK)


def test_bad_lines_are_reported_with_file_line_and_reason(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        json.dumps(event(1, timedelta(days=30))),  # 1 valid
        "",  # 2 blank: skipped, still numbered
        "{not json",  # 3
        json.dumps([event(4, timedelta(days=30))]),  # 4 an array, not one event
        json.dumps(event(5, timedelta(days=30), team=None)),  # 5 no team, no service
        json.dumps(event(6, -timedelta(days=1))),  # 6 tomorrow
        json.dumps(event(7, timedelta(days=800))),  # 7 beyond the backfill age limit
        json.dumps(event(8, timedelta(days=31), event_type="nope")),  # 8
        json.dumps(event(9, timedelta(days=32))),  # 9 valid
    ]
    path = cli_env / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rejects = cli_env / "rejects.jsonl"
    code = main(["backfill", "--dry-run", str(path), "--rejects", str(rejects)])
    captured = capsys.readouterr()
    assert code == EXIT_INVALID
    shown = [line for line in captured.err.splitlines() if line.startswith(str(path))]
    assert [line.split(":")[1:3] for line in shown] == [
        ["3", " not_json"],
        ["4", " schema_violation"],
        ["5", " missing_attribution"],
        ["6", " occurred_at_in_future"],
        ["7", " occurred_at_too_old"],
        ["8", " unknown_event_type"],
    ]
    assert "one event per line" in shown[1]
    assert "read 8 lines from 1 file" in captured.out and "2 valid, 6 invalid" in captured.out
    written = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [r["line"] for r in written] == [3, 4, 5, 6, 7, 8]
    assert written[0] == {
        "file": str(path),
        "line": 3,
        "reason": "not_json",
        "detail": written[0]["detail"],
        "text": "{not json",
    }


def test_many_bad_lines_are_summarised_on_stderr(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = cli_env / "bad.jsonl"
    path.write_text("nope\n" * 25)
    assert main(["backfill", "--dry-run", str(path)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.count("bad.jsonl:") == 10
    assert "... and 15 more invalid lines (--rejects FILE lists all)" in err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.jsonl", "missing.jsonl: no such file"),
        (lambda d: d, "is a directory"),
    ],
)
def test_missing_inputs_fail_before_anything_is_read(
    cli_env: Path, capsys: pytest.CaptureFixture[str], make: Any, message: str
) -> None:
    good = cli_env / "good.jsonl"
    good.write_bytes(jsonl([event(1, timedelta(days=30))]))
    assert main(["backfill", "--dry-run", str(good), str(make(cli_env))]) == EXIT_FAILED
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_stdin_twice_is_refused(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backfill", "--dry-run", "-", "-"]) == EXIT_FAILED
    assert "stdin (-) can be read only once" in capsys.readouterr().err


def test_bad_gzip_is_a_clear_error(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = gzip.compress(jsonl([event(i, timedelta(days=30)) for i in range(2000)]))
    (cli_env / "plain.gz").write_bytes(b'{"event_id": 1}\n')
    (cli_env / "truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
    (cli_env / "corrupt.jsonl.gz").write_bytes(bytes(corrupt))
    expected = {
        "plain.gz": "not gzip data",
        "truncated.jsonl.gz": "the gzip data is truncated after line",
        "corrupt.jsonl.gz": "bad gzip data after line",
    }
    for name, message in expected.items():
        assert main(["backfill", "--dry-run", str(cli_env / name)]) == EXIT_FAILED, name
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_help_explains_the_input_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backfill", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for needle in ("FILE [FILE ...]", "--dry-run", "--skip-invalid", "--rejects", "stdin"):
        assert needle in text
    assert "exit status:" in text
    for code in ("0  every line", "1  an input", "2  bad command", "3  some lines"):
        assert code in text
    with pytest.raises(SystemExit) as exited:
        main(["backfill"])
    assert exited.value.code == 2


def test_no_broker_is_a_clear_error(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    path = cli_env / "old.jsonl"
    path.write_bytes(jsonl([event(1, timedelta(days=30))]))
    assert main(["backfill", str(path)]) == EXIT_FAILED
    assert "no Kafka broker answers" in capsys.readouterr().err


# --- sending (a fake producer) ----------------------------------------------------------------


class FakeFuture:
    def __init__(self, ok: bool) -> None:
        self.is_done = True
        self.ok = ok
        self.exception = None if ok else RuntimeError("broker said no")

    def failed(self) -> bool:
        return not self.ok


class FakeProducer:
    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail_after = fail_after
        self.closed = False

    def send(self, topic: str, key: bytes | None, value: bytes) -> FakeFuture:
        self.sent.append((topic, key, value))
        return FakeFuture(self.fail_after is None or len(self.sent) <= self.fail_after)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def spool_of(events: list[dict[str, Any]]) -> Spool:
    spool = Spool()
    for e in events:
        spool.add((e.get("team") or "").encode(), msgspec.json.encode(e))
    return spool


def test_events_are_sent_in_arrays_per_key_within_count_and_size() -> None:
    events = [event(i, timedelta(days=30), team=f"t{i % 3}") for i in range(250)]
    spool = spool_of(events)
    producer, report = FakeProducer(), BackfillReport()
    send_spool(spool, producer, "bf", report, Ticker(io.StringIO()), per_message=40)
    received: list[str] = []
    for topic, key, value in producer.sent:
        batch = msgspec.json.decode(value)
        batch = batch if isinstance(batch, list) else [batch]
        assert topic == "bf" and len(batch) <= 40
        assert {e["team"].encode() for e in batch} == {key}
        received += [e["event_id"] for e in batch]
    assert sorted(received) == sorted(e["event_id"] for e in events)
    assert (report.sent, report.messages) == (250, len(producer.sent))

    small = Spool()
    line = msgspec.json.encode(events[0])
    for _ in range(10):
        small.add(b"k", line)
    producer = FakeProducer()
    send_spool(small, producer, "bf", BackfillReport(), Ticker(io.StringIO()), max_bytes=3 * 400)
    assert all(len(value) <= 1200 for _, _, value in producer.sent)
    assert (
        sum(len(msgspec.json.decode(v)) for _, _, v in producer.sent if v[:1] == b"[")
        + sum(1 for _, _, v in producer.sent if v[:1] == b"{")
        == 10
    )


def test_unacknowledged_messages_fail_with_what_was_sent() -> None:
    spool = spool_of([event(i, timedelta(days=30), team=f"t{i}") for i in range(5)])
    report = BackfillReport()
    with pytest.raises(BackfillError, match=r"acknowledged 3 of 5 events.*Run the same command"):
        send_spool(spool, FakeProducer(fail_after=3), "bf", report, Ticker(io.StringIO()))
    assert report.sent == 3


def test_invalid_lines_stop_the_send_unless_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.kafka.topics

    monkeypatch.setattr(pipeline.kafka.topics, "ensure_topics", lambda *a, **k: [])
    path = tmp_path / "some-bad.jsonl"
    path.write_bytes(jsonl([event(i, timedelta(days=30)) for i in range(7)]) + b"oops\n")
    producer = FakeProducer()
    quiet = Ticker(io.StringIO())

    def backfill(**options: Any) -> BackfillReport:
        return run_backfill(
            settings(),
            [str(path)],
            producer_factory=lambda: producer,
            ticker=quiet,
            show_invalid=lambda text: None,
            **options,
        )

    refused = backfill()
    assert (refused.invalid, refused.sent, producer.sent) == (1, 0, [])
    assert refused.exit_code == EXIT_INVALID
    assert any("nothing was sent" in line for line in refused.summary())

    skipped = backfill(skip_invalid=True)
    assert (skipped.valid, skipped.sent, skipped.exit_code) == (7, 7, EXIT_INVALID)
    assert {topic for topic, _, _ in producer.sent} == {"uptake.events.backfill"}
    assert producer.closed
    assert any("sent 7 events" in line for line in skipped.summary())


def test_an_empty_input_sends_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.kafka.topics

    monkeypatch.setattr(pipeline.kafka.topics, "ensure_topics", lambda *a, **k: [])
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n\n")
    producer = FakeProducer()
    report = run_backfill(settings(), [str(path)], producer_factory=lambda: producer)
    assert (report.lines, report.exit_code, producer.sent) == (0, EXIT_OK, [])
    assert report.summary()[-1] == "nothing to send: the input holds no events"
