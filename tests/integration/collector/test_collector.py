"""The HTTP collector served in-process on a free port, producing to the session's real Kafka
broker: formats, per-event results, authentication, limits, Kafka outages, health and metrics.

Each test gets its own topic and its own server; what landed is read back with KafkaConsumer.
"""

from __future__ import annotations

import ast
import inspect
import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pipeline.collector import auth
from pipeline.collector.app import create_app
from pipeline.collector.auth import TokensFileError, TokenTable, hash_token
from pipeline.collector.config import CollectorConfig
from pipeline.config.settings import Settings, SettingsError
from pipeline.contract.decode import BatchDecoder, DecodedBatch, SourceMessage
from pipeline.kafka.topics import ensure_topics
from pipeline.sdk import api_call
from tests.conftest import free_port
from tests.support.collector import Collector, FakeClock, metric, serve_in_thread

pytestmark = pytest.mark.integration

TOKEN = "gateway-token-0123456789abcdef"
OTHER_TOKEN = "deploys-token-0123456789abcdef"
TOKENS = TokenTable.from_mapping(
    {"api-gateway": hash_token(TOKEN), "deploy-pipeline": hash_token(OTHER_TOKEN)}
)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_TOKEN}"}


@pytest.fixture
def collector(kafka_bootstrap: str) -> Iterator[Callable[..., Collector]]:
    """Start collectors (own topic each); options are CollectorConfig fields."""
    started: list[Collector] = []

    def make(**options: Any) -> Collector:
        topic = f"test.collector.{uuid.uuid4().hex[:10]}"
        bootstrap = options.pop("kafka_bootstrap", kafka_bootstrap)
        if bootstrap == kafka_bootstrap:
            ensure_topics(kafka_bootstrap, {topic: 3})
        config = CollectorConfig(
            host="127.0.0.1", port=0, kafka_bootstrap=bootstrap, events_topic=topic, **options
        )
        clock = FakeClock()
        app = create_app(config, TOKENS, clock=clock, kafka_threads=4)
        server = serve_in_thread(app, topic, kafka_bootstrap, clock, AUTH)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def event(team: str | None = "checkout", **changes: Any) -> dict[str, Any]:
    built = api_call(
        capability="api-gateway",
        team=team,
        service="checkout-api",
        api="orders",
        operation="POST /v1/orders",
        status_code=201,
        latency_ms=23.7,
    )
    built.update(changes)
    return built


# --- formats -----------------------------------------------------------------------------------


def test_a_single_event_is_accepted_and_lands_with_the_tokens_source(
    collector: Callable[..., Collector],
) -> None:
    server = collector()
    sent = event()
    reply = server.post(sent)
    assert reply.status == 200, reply.raw
    assert reply.json == {
        "accepted": 1,
        "rejected": 0,
        "results": [
            {
                "index": 0,
                "event_id": sent["event_id"],
                "status": "accepted",
                "reason": None,
                "detail": None,
            }
        ],
    }
    [(key, [landed])] = server.landed()
    assert key == "checkout"
    assert landed == {**sent, "source": "api-gateway"}


def test_an_array_is_accepted_and_batched_per_team(collector: Callable[..., Collector]) -> None:
    server = collector()
    sent = [event(team) for team in ["checkout", "search", "checkout", "payments", "search"]]
    reply = server.post(sent)
    assert reply.status == 200, reply.raw
    assert reply.json["accepted"] == 5
    assert [r["index"] for r in reply.json["results"]] == [0, 1, 2, 3, 4]
    messages = server.landed()
    assert sorted(key for key, _ in messages) == ["checkout", "payments", "search"]
    for key, batch in messages:
        assert {e["team"] for e in batch} == {key}
    assert sorted(e["event_id"] for e in server.landed_events()) == sorted(
        e["event_id"] for e in sent
    )


def test_ndjson_is_accepted(collector: Callable[..., Collector]) -> None:
    server = collector()
    sent = [event(), event("search"), event(source="api-gateway")]
    body = b"\n".join(msgspec.json.encode(e) for e in sent[:2]) + b"\n\n"
    body += msgspec.json.encode(sent[2]) + b"\r\n"
    reply = server.post(body, ndjson=True)
    assert reply.status == 200, reply.raw
    assert reply.json["accepted"] == 3
    landed = server.landed_events()
    assert sorted(e["event_id"] for e in landed) == sorted(e["event_id"] for e in sent)
    assert {e["source"] for e in landed} == {"api-gateway"}


def test_a_mixed_batch_gives_per_event_results_and_only_valid_events_are_produced(
    collector: Callable[..., Collector],
) -> None:
    server = collector()
    good = [event(), event("search")]
    bad_schema = event()
    bad_schema["data"]["status_code"] = 600
    unattributed = event(team=None, service=None)
    impostor = event(source="deploy-pipeline")
    sent: list[Any] = [good[0], bad_schema, unattributed, 42, impostor, good[1]]
    reply = server.post(sent)
    assert reply.status == 207, reply.raw
    body = reply.json
    assert (body["accepted"], body["rejected"]) == (2, 4)
    results = body["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    assert results[1]["reason"] == "schema_violation"
    assert results[1]["event_id"] == bad_schema["event_id"]
    assert "$.data.status_code" in results[1]["detail"]
    assert results[2]["reason"] == "missing_attribution"
    assert results[3]["reason"] == "schema_violation"
    assert results[3]["event_id"] is None
    assert results[4]["reason"] == "schema_violation"
    assert "does not match the token" in results[4]["detail"]
    assert "$.source" in results[4]["detail"]
    landed = server.landed_events()
    assert sorted(e["event_id"] for e in landed) == sorted(e["event_id"] for e in good)


def test_all_events_rejected_is_422_and_nothing_is_produced(
    collector: Callable[..., Collector],
) -> None:
    server = collector()
    reply = server.post([event(schema_version=9), event(event_type="page_view")])
    assert reply.status == 422
    assert [r["reason"] for r in reply.json["results"]] == [
        "unsupported_version",
        "unknown_event_type",
    ]
    ndjson = server.request(
        "POST",
        "/v1/events",
        msgspec.json.encode(event()) + b'\n{not json\n{"team": "caf\xe9"}\n',
        {"Content-Type": "application/x-ndjson", **AUTH},
    )
    assert ndjson.status == 207
    assert [r["reason"] for r in ndjson.json["results"]] == [None, "not_json", "not_json"]
    assert len(server.landed_events()) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"this is not json", "application/json", "not_json"),
        (b'{"event_type": "api_call", ', "application/json", "not_json"),
        (b"hello\nworld\n", "application/x-ndjson", "not_json"),
        (b'{"team": "caf\xe9"}', "application/json", "not_json"),  # Latin-1, not UTF-8
        (b"", "application/json", "empty_body"),
        (b"[]", "application/json", "empty_batch"),
        (b'"an event"', "application/json", "not_an_event"),
    ],
)
def test_a_body_that_is_not_events_at_all_is_400(
    collector: Callable[..., Collector], body: bytes, content_type: str, code: str
) -> None:
    server = collector()
    reply = server.request("POST", "/v1/events", body, {"Content-Type": content_type, **AUTH})
    assert reply.status == 400
    assert reply.json["error"] == code
    assert reply.json["message"]


# --- CloudEvents 1.0 ----------------------------------------------------------------------------


def cloud_event(team: str = "checkout", source: str = "api-gateway", **attributes: Any) -> Any:
    """A CloudEvent of the SDK (cloudevents.core) standing for `event(team)`."""
    from cloudevents.core.v1.event import CloudEvent

    native = event(team)
    data = {k: v for k, v in native.items() if k not in ("event_id", "occurred_at", "source")}
    data.pop("event_type"), data.pop("schema_version")
    base = {
        "id": native["event_id"],
        "source": source,
        "type": "dev.uptake.api_call.v1",
        "time": datetime.fromisoformat(native["occurred_at"]),
    }
    return CloudEvent({**base, **attributes}, data)


def worker_verdict(values: list[bytes]) -> DecodedBatch:
    """What the worker's decoder makes of messages the collector produced."""
    messages = [SourceMessage("t", 0, i, v) for i, v in enumerate(values)]
    return BatchDecoder().decode(messages)


def test_cloudevents_structured_mode_is_accepted_and_forwarded_as_a_cloudevent(
    collector: Callable[..., Collector],
) -> None:
    from cloudevents.core.bindings.http import to_structured_event

    server = collector()
    sent = cloud_event()
    message = to_structured_event(sent)
    assert message.headers["content-type"] == "application/cloudevents+json"
    reply = server.request("POST", "/v1/events", message.body, {**message.headers, **AUTH})
    assert reply.status == 200, reply.raw
    [result] = reply.json["results"]
    assert (result["status"], result["event_id"]) == ("accepted", sent.get_id())
    [(key, [landed])] = server.landed()
    assert key == "checkout"
    assert landed == json.loads(message.body), "the CloudEvent is forwarded as it came"
    batch = worker_verdict([msgspec.json.encode([landed])])
    assert [str(e.event_id) for e in batch.events] == [sent.get_id()]


def test_cloudevents_batch_format_gets_per_event_results(
    collector: Callable[..., Collector],
) -> None:
    from cloudevents.core.formats.json import JSONFormat

    server = collector()
    good = [cloud_event("checkout"), cloud_event("search")]
    old_spec = json.loads(JSONFormat().write(cloud_event()))
    old_spec["specversion"] = "0.3"
    unknown = cloud_event(type="com.example.page_view")
    foreign = cloud_event(source="deploy-pipeline")
    no_source = json.loads(JSONFormat().write(cloud_event()))
    del no_source["source"]
    items = [json.loads(JSONFormat().write(e)) for e in (good[0], unknown, foreign)]
    body = [
        items[0],
        old_spec,
        items[1],
        items[2],
        no_source,
        json.loads(JSONFormat().write(good[1])),
    ]
    reply = server.request(
        "POST",
        "/v1/events",
        msgspec.json.encode(body),
        {"Content-Type": "application/cloudevents-batch+json", **AUTH},
    )
    assert reply.status == 207, reply.raw
    results = reply.json["results"]
    assert [r["reason"] for r in results] == [
        None,
        "unsupported_version",
        "unknown_event_type",
        "schema_violation",
        "schema_violation",
        None,
    ]
    assert [r["event_id"] for r in results] == [e["id"] for e in body]
    assert results[1]["detail"].endswith("- at `$.specversion`")
    assert "does not match the token" in results[3]["detail"]
    assert "`source` is required" in results[4]["detail"], "a CloudEvent's source is not filled"
    landed = server.landed_events()
    assert sorted(e["id"] for e in landed) == sorted(e.get_id() for e in good)


def test_cloudevents_http_binary_mode_is_accepted_and_forwarded_in_structured_form(
    collector: Callable[..., Collector],
) -> None:
    from cloudevents.core.bindings.http import to_binary_event

    server = collector()
    sent = cloud_event(datacontenttype="application/json", subject="checkout-api")
    message = to_binary_event(sent)
    assert message.headers["ce-id"] == sent.get_id()
    reply = server.request("POST", "/v1/events", message.body, {**message.headers, **AUTH})
    assert reply.status == 200, reply.raw
    assert reply.json["results"][0]["event_id"] == sent.get_id()
    [(key, [landed])] = server.landed()
    assert key == "checkout"
    assert landed["specversion"] == "1.0" and landed["id"] == sent.get_id()
    assert landed["subject"] == "checkout-api"
    assert landed["data"] == json.loads(message.body)
    batch = worker_verdict([msgspec.json.encode([landed])])
    assert [str(e.event_id) for e in batch.events] == [sent.get_id()]

    unknown = to_binary_event(cloud_event(type="com.example.page_view"))
    reply = server.request("POST", "/v1/events", unknown.body, {**unknown.headers, **AUTH})
    assert reply.status == 422, reply.raw
    [result] = reply.json["results"]
    assert (result["reason"], result["event_id"]) == (
        "unknown_event_type",
        unknown.headers["ce-id"],
    )
    not_json = server.request(
        "POST",
        "/v1/events",
        b"team=checkout",
        {**message.headers, "Content-Type": "application/json", **AUTH},
    )
    assert not_json.status == 422 and not_json.json["results"][0]["reason"] == "not_json"
    assert len(server.landed_events()) == 1


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "invalid_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "invalid_token"),
        ({"Authorization": f"Bearer {hash_token(TOKEN)}"}, "invalid_token"),  # the digest itself
    ],
)
def test_a_missing_or_wrong_token_is_401(
    collector: Callable[..., Collector], headers: dict[str, str], code: str
) -> None:
    server = collector()
    reply = server.post([event()], headers=headers)
    assert reply.status == 401
    assert reply.json["error"] == code
    assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="uptake"')
    assert server.landed_events() == []


def test_tokens_are_compared_with_hmac_compare_digest_against_every_source(
    collector: Callable[..., Collector], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = auth.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    server = collector()
    assert server.post([event()]).status == 200
    # Every configured digest is compared (no early exit), the presented token only as a hash.
    assert sorted(expected for _, expected in calls) == sorted(d for _, d in TOKENS.entries)
    assert {presented for presented, _ in calls} == {hash_token(TOKEN).encode()}
    calls.clear()
    other = server.post([event(source="deploy-pipeline")], OTHER_AUTH)
    assert other.status == 200
    assert len(calls) == 2
    source = inspect.getsource(auth.TokenTable.source_for)
    assert "hmac.compare_digest" in source and "==" not in source


def test_a_second_source_speaks_only_for_itself(collector: Callable[..., Collector]) -> None:
    server = collector()
    reply = server.post([event()], OTHER_AUTH)
    assert reply.status == 200
    assert server.landed_events()[0]["source"] == "deploy-pipeline"


# --- limits ------------------------------------------------------------------------------------


def test_a_body_over_the_byte_limit_is_413(collector: Callable[..., Collector]) -> None:
    server = collector(max_body_bytes=2000)
    sent = [event() for _ in range(20)]
    assert len(msgspec.json.encode(sent)) > 2000
    reply = server.post(sent)
    assert reply.status == 413
    assert reply.json["error"] == "body_too_large"
    assert "2000 bytes" in reply.json["message"]
    assert server.landed_events() == []


def test_too_many_events_in_one_request_is_413(collector: Callable[..., Collector]) -> None:
    server = collector(max_events=3)
    reply = server.post([event() for _ in range(4)])
    assert reply.status == 413
    assert reply.json["error"] == "too_many_events"
    assert server.post([event() for _ in range(3)]).status == 200
    assert len(server.landed_events()) == 3


def test_a_source_over_its_rate_gets_429_with_retry_after(
    collector: Callable[..., Collector],
) -> None:
    server = collector(rate=2, burst=5)
    assert server.post([event() for _ in range(5)]).status == 200  # the whole burst
    reply = server.post([event() for _ in range(3)])
    assert reply.status == 429
    assert reply.json["error"] == "rate_limited"
    assert reply.headers["Retry-After"] == "2"  # 3 tokens at 2/s
    # Another source has its own bucket.
    other = server.post([event(source="deploy-pipeline")], OTHER_AUTH)
    assert other.status == 200
    server.clock.now += 1.5  # 3 tokens refilled
    assert server.post([event() for _ in range(3)]).status == 200
    assert len(server.landed_events()) == 9
    too_big = server.post([event() for _ in range(6)])  # more than the bucket ever holds
    assert too_big.status == 413


# --- Kafka unavailable -------------------------------------------------------------------------


def test_kafka_unreachable_is_503_never_200(collector: Callable[..., Collector]) -> None:
    server = collector(kafka_bootstrap=f"127.0.0.1:{free_port()}", kafka_timeout_s=1.0)
    undelivered = metric(
        server, "uptake_collector_events_total", route="events", outcome="undelivered"
    )
    started = time.monotonic()
    reply = server.post([event(), event("search")])
    assert reply.status == 503, reply.raw
    assert time.monotonic() - started < 10
    assert reply.json["error"] == "kafka_unavailable"
    assert "Kafka did not acknowledge the events within 1 s" in reply.json["message"]
    assert int(reply.headers["Retry-After"]) > 0
    again = server.post([event()])  # fails fast now, still never 200
    assert again.status == 503
    assert metric(
        server, "uptake_collector_events_total", route="events", outcome="undelivered"
    ) == (undelivered + 3)
    ready = server.request("GET", "/readyz")
    assert ready.status == 503
    assert ready.json["error"] == "not_ready"
    assert server.request("GET", "/healthz").status == 200
    # Invalid events are still judged: nothing to produce, so no Kafka needed.
    assert server.post([event(schema_version=9)]).status == 422


# --- operations endpoints ----------------------------------------------------------------------


def test_health_readiness_and_metrics(collector: Callable[..., Collector]) -> None:
    server = collector()
    health = server.request("GET", "/healthz")
    assert (health.status, health.json) == (200, {"status": "ok"})
    ready = server.request("GET", "/readyz")
    assert (ready.status, ready.json["status"]) == (200, "ready")
    accepted = metric(server, "uptake_collector_events_total", route="events", outcome="accepted")
    rejected = metric(server, "uptake_collector_events_total", route="events", outcome="rejected")
    ok = metric(server, "uptake_collector_requests_total", route="events", status="207")
    count = metric(server, "uptake_collector_request_duration_seconds_count", route="events")
    assert server.post([event(), event(), event(schema_version=9)]).status == 207
    assert server.request("GET", "/metrics").status == 404  # never on the public port
    reply = server.scrape()
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.raw.decode()
    for name in (
        "uptake_collector_requests_total",
        "uptake_collector_events_total",
        "uptake_collector_request_duration_seconds_bucket",
    ):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text or name in text
    assert (
        metric(server, "uptake_collector_events_total", route="events", outcome="accepted")
        == accepted + 2
    )
    assert (
        metric(server, "uptake_collector_events_total", route="events", outcome="rejected")
        == rejected + 1
    )
    assert metric(server, "uptake_collector_requests_total", route="events", status="207") == ok + 1
    assert (
        metric(server, "uptake_collector_request_duration_seconds_count", route="events")
        == count + 1
    )


def test_unknown_paths_and_methods_answer_json(collector: Callable[..., Collector]) -> None:
    server = collector()
    missing = server.request("GET", "/v2/nothing")
    assert (missing.status, missing.json["error"]) == (404, "not_found")
    wrong = server.request("GET", "/v1/events")
    assert (wrong.status, wrong.json["error"]) == (405, "method_not_allowed")
    assert wrong.headers["Allow"] == "POST"
    assert "POST" in wrong.json["message"]


# --- configuration -----------------------------------------------------------------------------


def test_tokens_files_in_json_and_toml(tmp_path: Path) -> None:
    digest = hash_token(TOKEN)
    as_json = tmp_path / "tokens.json"
    as_json.write_text(
        json.dumps({"api-gateway": digest, "ci": [hash_token("a"), hash_token("b")]})
    )
    as_toml = tmp_path / "tokens.toml"
    as_toml.write_text(f'api-gateway = "{digest.upper()}"\n')
    assert TokenTable.load(as_json).source_for(TOKEN) == "api-gateway"
    assert TokenTable.load(as_json).source_for("b") == "ci"
    assert TokenTable.load(as_toml).source_for(TOKEN) == "api-gateway"
    assert TokenTable.load(as_toml).source_for("nope") is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"api-gateway": "the-token-itself"}', "never the token itself"),
        ("{}", "no source is configured"),
        ("[1, 2]", "must map source names"),
        ("{not json", "not valid JSON/TOML"),
        (f'{{"a": "{hash_token("x")}", "b": "{hash_token("x")}"}}', "share a token"),
    ],
)
def test_a_bad_tokens_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(TokensFileError, match=message):
        TokenTable.load(path)
    with pytest.raises(TokensFileError, match="cannot read"):
        TokenTable.load(tmp_path / "missing.json")


def test_config_comes_from_settings_and_flags_win() -> None:
    env = {
        "UPTAKE_COLLECTOR_PORT": "9000",
        "UPTAKE_COLLECTOR_RATE": "50",
        "UPTAKE_COLLECTOR_TOKENS": "/etc/uptake/tokens.toml",
        "UPTAKE_COLLECTOR_WEBHOOKS": "/etc/uptake/webhooks.toml",
        "UPTAKE_EVENTS_TOPIC": "events.x",
    }
    config = CollectorConfig.from_env(Settings.from_env(env), port=9001, max_events=None)
    assert (config.port, config.rate, config.max_events) == (9001, 50.0, 1000)
    assert config.tokens_file == Path("/etc/uptake/tokens.toml")
    assert config.webhooks_file == Path("/etc/uptake/webhooks.toml")
    assert config.events_topic == "events.x"
    assert config.bucket_size == 1000  # max(rate, max_events)
    with pytest.raises(SettingsError, match="UPTAKE_COLLECTOR_RATE='fast' is not a valid float"):
        Settings.from_env({"UPTAKE_COLLECTOR_RATE": "fast"})
    with pytest.raises(SettingsError, match="UPTAKE_COLLECTOR_MAX_EVENTS / --max-events"):
        CollectorConfig.from_env(Settings.from_env({}), max_events=0)


def test_config_without_variables_has_the_settings_defaults() -> None:
    config = CollectorConfig.from_env(Settings.from_env({}))
    defaults = Settings()
    assert config.host == defaults.collector.host == "127.0.0.1"
    assert config.port == defaults.collector.port == 8080
    assert (config.tokens_file, config.webhooks_file) == (None, None)  # "" means no file
    assert config.max_body_bytes == defaults.collector.max_body_bytes == 1024 * 1024
    assert config.max_events == defaults.collector.max_events == 1000
    assert config.rate == defaults.collector.rate == 1000.0
    assert config.burst is None and defaults.collector.burst == 0.0
    assert config.kafka_timeout_s == defaults.collector.kafka_timeout_s == 10.0
    assert config == CollectorConfig(
        limits=config.limits
    )  # the dataclass defaults are the same ones
    assert config.limits.max_lateness.total_seconds() == defaults.ingest.max_lateness_s


def test_config_reads_the_environment_only_through_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPTAKE_COLLECTOR_PORT", "9100")
    monkeypatch.setenv("UPTAKE_COLLECTOR_BURST", "0")
    config = CollectorConfig.from_env()
    assert (config.port, config.burst) == (9100, None)
    package = Path(inspect.getfile(CollectorConfig)).parent
    for module in package.glob("*.py"):  # no module of the collector even imports os
        tree = ast.parse(module.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        imported |= {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "os" not in imported, module.name


@pytest.mark.parametrize(
    ("variable", "raw", "words"),
    [
        ("UPTAKE_COLLECTOR_PORT", "70000", "UPTAKE_COLLECTOR_PORT must be a port number"),
        ("UPTAKE_COLLECTOR_MAX_BODY_BYTES", "0", "UPTAKE_COLLECTOR_MAX_BODY_BYTES must be at"),
        ("UPTAKE_COLLECTOR_MAX_EVENTS", "0", "UPTAKE_COLLECTOR_MAX_EVENTS must be at least 1"),
        ("UPTAKE_COLLECTOR_RATE", "-1", "UPTAKE_COLLECTOR_RATE must be a finite number >= 0"),
        ("UPTAKE_COLLECTOR_RATE", "nan", "UPTAKE_COLLECTOR_RATE must be a finite number >= 0"),
        ("UPTAKE_COLLECTOR_BURST", "0.5", "UPTAKE_COLLECTOR_BURST must be 0 (the default size)"),
        ("UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S", "0", "UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S must be a"),
        ("UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S", "inf", "UPTAKE_COLLECTOR_KAFKA_TIMEOUT_S must be a"),
        ("UPTAKE_COLLECTOR_PORT", "http", "UPTAKE_COLLECTOR_PORT='http' is not a valid int"),
    ],
)
def test_a_bad_collector_variable_is_named_precisely(variable: str, raw: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert str(caught.value).startswith(words), str(caught.value)


def test_flags_are_validated_with_their_variable_and_flag() -> None:
    settings = Settings.from_env({})
    with pytest.raises(SettingsError, match=r"UPTAKE_COLLECTOR_RATE / --rate .* not nan"):
        CollectorConfig.from_env(settings, rate=float("nan"))
    with pytest.raises(SettingsError, match="UPTAKE_COLLECTOR_BURST / --burst"):
        CollectorConfig.from_env(settings, burst=0.5)
    assert CollectorConfig.from_env(settings, burst=0).burst is None  # 0: the default size
    with pytest.raises(TypeError, match="no option colour"):
        CollectorConfig.from_env(settings, colour="blue")
