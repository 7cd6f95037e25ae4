"""Settings: defaults, parsing of every environment variable, validation and secret redaction."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from pipeline.config.settings import Secret, Settings, SettingsError, redact_url, variable_fields

PASSWORD = "s3cret"
URL_WITH_PASSWORD = f"http://u:{PASSWORD}@h:8123/db"

PARTS = {f.name: f.default_factory for f in dataclasses.fields(Settings) if "env" not in f.metadata}
PART_OF = {g.name: part for part, kind in PARTS.items() for g in dataclasses.fields(kind)}  # type: ignore[arg-type]
FIELDS = {f.name: f for f in variable_fields()}  # root and parts, in the listing's order
ENV_OF = {name: f.metadata["env"].name for name, f in FIELDS.items()}


def value_of(settings: Settings, name: str) -> object:
    """A setting by its field name, in the root or in its part."""
    return getattr(getattr(settings, PART_OF[name]) if name in PART_OF else settings, name)


INT_FIELDS = [n for n, f in FIELDS.items() if type(f.default) is int]
FLOAT_FIELDS = [n for n, f in FIELDS.items() if type(f.default) is float]


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.home == Path(".uptake")
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.kafka.events_topic == "uptake.events"
    assert settings.kafka.dlq_topic == "uptake.events.dlq"
    assert settings.kafka.topic_partitions == 4
    assert settings.kafka.consumer_group == "uptake-worker"
    assert settings.warehouse.clickhouse_url == ""
    assert isinstance(settings.warehouse.clickhouse_url, Secret)
    assert settings.ingest.batch_max_messages == 20_000
    assert settings.ingest.batch_max_bytes == 8 * 1024 * 1024
    assert settings.ingest.flush_interval_s == 1.0
    assert settings.ingest.max_message_bytes == 1024 * 1024
    assert settings.ingest.max_future_skew_s == 300.0
    assert settings.ingest.max_lateness_s == 7 * 24 * 3600.0
    assert settings.ingest.metrics_port == 9464
    assert settings.log_level == "info"
    assert settings.broker_home == Path(".uptake") / "kafka"


def test_every_field_has_its_own_environment_variable_and_help() -> None:
    names = list(ENV_OF.values())
    assert len(names) == len(set(names)), "two settings share an environment variable"
    for name in names:
        assert name.startswith(("UPTAKE_", "KAFKA_")), name
    for f in FIELDS.values():
        assert f.metadata["env"].help.strip(), f"{f.name} has no help text"


# (variable, raw value, field, expected value); the expected type is checked exactly.
EXPLICIT = [
    ("UPTAKE_HOME", "/var/lib/uptake", "home", Path("/var/lib/uptake")),
    ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9093", "bootstrap", "k1:9092,k2:9093"),
    ("UPTAKE_EVENTS_TOPIC", "ev", "events_topic", "ev"),
    ("UPTAKE_DLQ_TOPIC", "ev.dlq", "dlq_topic", "ev.dlq"),
    ("UPTAKE_TOPIC_PARTITIONS", "12", "topic_partitions", 12),
    ("UPTAKE_CONSUMER_GROUP", "grp", "consumer_group", "grp"),
    ("UPTAKE_CLICKHOUSE_URL", URL_WITH_PASSWORD, "clickhouse_url", Secret(URL_WITH_PASSWORD)),
    ("UPTAKE_BATCH_MAX_MESSAGES", "250", "batch_max_messages", 250),
    ("UPTAKE_BATCH_MAX_BYTES", "1000000", "batch_max_bytes", 1_000_000),
    ("UPTAKE_FLUSH_INTERVAL_S", "0.25", "flush_interval_s", 0.25),
    ("UPTAKE_MAX_MESSAGE_BYTES", "2048", "max_message_bytes", 2048),
    ("UPTAKE_MAX_FUTURE_SKEW_S", "60", "max_future_skew_s", 60.0),
    ("UPTAKE_MAX_LATENESS_S", "3600.5", "max_lateness_s", 3600.5),
    ("UPTAKE_METRICS_PORT", "0", "metrics_port", 0),
    ("UPTAKE_LOG_LEVEL", "debug", "log_level", "debug"),
    ("UPTAKE_LOG_FORMAT", "json", "log_format", "json"),
    (
        "UPTAKE_RUNBOOK_BASE_URL",
        "https://d.example/ops",
        "runbook_base_url",
        "https://d.example/ops",
    ),
    ("UPTAKE_BACKSTAGE_URL", "https://bs.example:7007", "backstage_url", "https://bs.example:7007"),
    ("UPTAKE_BACKSTAGE_TOKEN", "s3cret", "backstage_token", Secret("s3cret")),
    ("UPTAKE_CHDB_MAX_MEMORY_MB", "512", "chdb_max_memory_mb", 512),
    ("UPTAKE_CHDB_MAX_QUERY_MEMORY_MB", "128", "chdb_max_query_memory_mb", 128),
    ("UPTAKE_CHDB_CACHE_MB", "0", "chdb_cache_mb", 0),
    ("UPTAKE_FETCH_MAX_BYTES", "4194304", "fetch_max_bytes", 4194304),
    ("UPTAKE_STREAM_BUFFER_MESSAGES", "2000", "stream_buffer_messages", 2000),
]


def test_the_backstage_url_must_be_http_and_its_token_is_hidden() -> None:
    with pytest.raises(SettingsError, match="UPTAKE_BACKSTAGE_URL must be the http"):
        Settings.from_env({"UPTAKE_BACKSTAGE_URL": "backstage.example"})
    settings = Settings.from_env(
        {"UPTAKE_BACKSTAGE_URL": "https://bs.example", "UPTAKE_BACKSTAGE_TOKEN": "s3cret"}
    )
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.describe())


@pytest.mark.parametrize(("variable", "raw", "name", "expected"), EXPLICIT)
def test_each_variable_is_parsed_to_the_field_type(
    variable: str, raw: str, name: str, expected: object
) -> None:
    assert ENV_OF[name] == variable
    value = value_of(Settings.from_env({variable: raw}), name)
    assert value == expected
    assert type(value) is type(expected)


def test_fields_without_an_explicit_case_still_parse_to_their_type() -> None:
    """Settings added later get at least a generic check: a valid value keeps the type."""
    samples = {int: "3", float: "2.5", str: "text", bool: "true"}  # booleans are strict
    choices = {
        "kill_at": "mid_batch",
        "writer": "kafka",
        "security_protocol": "SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "compression": "zstd",
    }  # closed sets of values
    covered = {name for _, _, name, _ in EXPLICIT} | KAFKA_SECURITY_COVERED
    for name, f in FIELDS.items():
        if name in covered:
            continue
        kind = type(f.default)
        raw = choices.get(name) or samples.get(kind, "/tmp/x")
        value = value_of(Settings.from_env({ENV_OF[name]: raw}), name)
        assert type(value) is kind, (name, value)


@pytest.mark.parametrize("url", ["docs/operations.md", "ftp://d.example/ops", "https://d/ops#x"])
def test_a_runbook_base_that_is_no_absolute_http_url_without_anchor_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="UPTAKE_RUNBOOK_BASE_URL must be an absolute http"):
        Settings.from_env({"UPTAKE_RUNBOOK_BASE_URL": url})


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    with pytest.raises(
        SettingsError, match="UPTAKE_LOG_FORMAT must be one of text, json, not 'xml'"
    ):
        Settings.from_env({"UPTAKE_LOG_FORMAT": "xml"})


def test_an_unknown_kill_point_is_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="before_insert, mid_batch, after_insert"):
        Settings.from_env({"UPTAKE_CHAOS_KILL_AT": "sometimes"})


def test_an_unknown_writer_is_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="UPTAKE_WRITER must be one of direct, kafka"):
        Settings.from_env({"UPTAKE_WRITER": "clickhouse"})
    assert Settings.from_env({}).warehouse.writer == "direct"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kafka_compression_takes_each_codec(codec: str) -> None:
    assert Settings.from_env({"UPTAKE_KAFKA_COMPRESSION": codec}).kafka.compression == codec


@pytest.mark.parametrize("raw", ["brotli", "LZ4", "zstd ", "true", "0"])
def test_an_unknown_kafka_compression_is_refused_with_the_choices(raw: str) -> None:
    with pytest.raises(
        SettingsError,
        match=r"UPTAKE_KAFKA_COMPRESSION must be one of none, gzip, snappy, lz4, zstd, not ",
    ):
        Settings.from_env({"UPTAKE_KAFKA_COMPRESSION": raw})


def test_kafka_compression_defaults_to_the_measured_codec_and_is_listed() -> None:
    settings = Settings.from_env({})
    assert settings.kafka.compression == "lz4"  # docs/benchmarks.md, "Producer compression"
    rows = {name: shown for name, shown, _ in settings.describe()}
    assert rows["UPTAKE_KAFKA_COMPRESSION"] == "lz4"


@pytest.mark.parametrize("raw", ["-1", "3601", "nan", "inf"])
def test_the_undecodable_exit_delay_is_bounded(raw: str) -> None:
    with pytest.raises(SettingsError, match="UPTAKE_UNDECODABLE_EXIT_DELAY_S"):
        Settings.from_env({"UPTAKE_UNDECODABLE_EXIT_DELAY_S": raw})


def test_an_empty_variable_means_the_default() -> None:
    environ = {variable: "" for variable in ENV_OF.values()}
    assert Settings.from_env(environ) == Settings()


def test_from_env_without_a_mapping_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPTAKE_TOPIC_PARTITIONS", "7")
    monkeypatch.setenv("UPTAKE_EVENTS_TOPIC", "from.os.environ")
    settings = Settings.from_env()
    assert settings.kafka.topic_partitions == 7
    assert settings.kafka.events_topic == "from.os.environ"


@pytest.mark.parametrize("name", INT_FIELDS)
@pytest.mark.parametrize("raw", ["abc", "1.5", "4x"])
def test_a_bad_int_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({ENV_OF[name]: raw})
    message = str(caught.value)
    assert ENV_OF[name] in message
    assert repr(raw) in message
    assert "int" in message


@pytest.mark.parametrize("name", FLOAT_FIELDS)
def test_a_bad_float_names_the_variable(name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({ENV_OF[name]: "soon"})
    message = str(caught.value)
    assert ENV_OF[name] in message
    assert "'soon'" in message
    assert "float" in message


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("UPTAKE_TOPIC_PARTITIONS", "0"),
        ("UPTAKE_TOPIC_PARTITIONS", "-3"),
        ("UPTAKE_BATCH_MAX_MESSAGES", "0"),
        ("UPTAKE_BATCH_MAX_BYTES", "0"),
        ("UPTAKE_FLUSH_INTERVAL_S", "0"),
        ("UPTAKE_FLUSH_INTERVAL_S", "-0.5"),
        ("UPTAKE_METRICS_PORT", "65536"),
        ("UPTAKE_METRICS_PORT", "-1"),
    ],
)
def test_validate_rejects_values_out_of_range(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_validate_accepts_the_edges_of_the_ranges() -> None:
    settings = Settings.from_env(
        {
            "UPTAKE_TOPIC_PARTITIONS": "1",
            "UPTAKE_BATCH_MAX_MESSAGES": "1",
            "UPTAKE_FLUSH_INTERVAL_S": "0.001",
            "UPTAKE_METRICS_PORT": "65535",
        }
    )
    assert (settings.kafka.topic_partitions, settings.ingest.metrics_port) == (1, 65535)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        (f"ftp://u:{PASSWORD}@h:21/db", "ftp"),
        (f"clickhouse://u:{PASSWORD}@h/db", "clickhouse"),
        ("h:8123/db", "h"),
        ("/just/a/folder", "nothing"),
    ],
)
def test_a_bad_url_scheme_names_the_variable_and_hides_the_password(url: str, scheme: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"UPTAKE_CLICKHOUSE_URL": url})
    message = str(caught.value)
    assert "UPTAKE_CLICKHOUSE_URL" in message
    assert f"{scheme}://" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value)


@pytest.mark.parametrize("url", ["chdb:///data/wh", "http://h:8123/db", "https://h/db"])
def test_validate_accepts_the_three_url_forms(url: str) -> None:
    assert Settings.from_env({"UPTAKE_CLICKHOUSE_URL": url}).warehouse.url == url


def test_secret_repr_hides_the_value_and_reveal_returns_it() -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in repr(secret)
    assert repr(secret) == "Secret('***')"
    assert repr(Secret("")) == "Secret('')"
    assert secret.reveal() == PASSWORD
    assert type(secret.reveal()) is str
    assert PASSWORD not in repr([secret])  # containers use the repr too
    assert PASSWORD not in f"{secret!r}"


def test_repr_of_settings_never_contains_the_password() -> None:
    settings = Settings.from_env({"UPTAKE_CLICKHOUSE_URL": URL_WITH_PASSWORD})
    assert settings.warehouse.url == URL_WITH_PASSWORD  # the password is there ...
    assert PASSWORD not in repr(settings)  # ... and never shown
    assert PASSWORD not in str(settings)
    assert PASSWORD not in f"{settings}"


def test_a_plain_string_url_override_is_still_treated_as_a_secret() -> None:
    settings = Settings.from_env({}, clickhouse_url=URL_WITH_PASSWORD)
    assert PASSWORD not in repr(settings)
    assert all(PASSWORD not in value for _, value, _ in settings.describe())


def test_describe_lists_every_setting_and_redacts_the_password() -> None:
    settings = Settings.from_env({"UPTAKE_CLICKHOUSE_URL": URL_WITH_PASSWORD})
    rows = settings.describe()
    assert [name for name, _, _ in rows] == list(ENV_OF.values())
    shown = dict((name, value) for name, value, _ in rows)
    assert shown["UPTAKE_CLICKHOUSE_URL"] == "http://u:***@h:8123/db"
    assert shown["UPTAKE_TOPIC_PARTITIONS"] == "4"
    for row in rows:
        assert all(PASSWORD not in part for part in row)


def test_describe_shows_the_default_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env({"UPTAKE_HOME": str(tmp_path)})
    shown = {name: value for name, value, _ in settings.describe()}
    assert shown["UPTAKE_CLICKHOUSE_URL"] == f"(default) chdb://{tmp_path.resolve()}/warehouse"


def test_the_default_warehouse_is_an_absolute_chdb_folder_in_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path.resolve()
    assert Settings.from_env({}).warehouse.url == f"chdb://{root}/.uptake/warehouse"
    relative = Settings.from_env({"UPTAKE_HOME": "state/here"})
    assert relative.warehouse.url == f"chdb://{root}/state/here/warehouse"
    url = relative.warehouse.url.removeprefix("chdb://")
    assert Path(url).is_absolute()


def test_a_configured_url_wins_over_the_default_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"UPTAKE_HOME": str(tmp_path), "UPTAKE_CLICKHOUSE_URL": "chdb:///elsewhere/wh"}
    )
    assert settings.warehouse.url == "chdb:///elsewhere/wh"


def test_overrides_win_over_the_environment() -> None:
    environ = {"UPTAKE_TOPIC_PARTITIONS": "8", "UPTAKE_EVENTS_TOPIC": "env.topic"}
    settings = Settings.from_env(environ, topic_partitions=2, events_topic="override.topic")
    assert settings.kafka.topic_partitions == 2
    assert settings.kafka.events_topic == "override.topic"


def test_an_override_skips_parsing_a_bad_environment_value() -> None:
    settings = Settings.from_env({"UPTAKE_TOPIC_PARTITIONS": "abc"}, topic_partitions=3)
    assert settings.kafka.topic_partitions == 3


def test_overrides_are_validated_too() -> None:
    with pytest.raises(SettingsError, match="UPTAKE_TOPIC_PARTITIONS"):
        Settings.from_env({}, topic_partitions=0)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.kafka.topic_partitions = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (URL_WITH_PASSWORD, "http://u:***@h:8123/db"),
        (f"https://admin:{PASSWORD}@ch.example/db?x=1", "https://admin:***@ch.example/db?x=1"),
        ("http://u@h:8123/db", "http://u@h:8123/db"),
        ("chdb:///data/wh", "chdb:///data/wh"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- Kafka security (UPTAKE_KAFKA_*): only valid together, so checked here as combinations ---
KAFKA_SECURITY_COVERED = {
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
}
SASL_ENV = {
    "UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "UPTAKE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "UPTAKE_KAFKA_SASL_USERNAME": "svc-uptake",
    "UPTAKE_KAFKA_SASL_PASSWORD": PASSWORD,
}


def test_kafka_security_defaults_to_plaintext() -> None:
    settings = Settings.from_env({})
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.kafka.sasl_mechanism == "PLAIN"
    assert settings.kafka.sasl_password == Secret("")


def test_kafka_sasl_settings_parse_and_the_password_is_a_hidden_secret(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = Settings.from_env({**SASL_ENV, "UPTAKE_KAFKA_SSL_CAFILE": str(ca)})
    assert settings.kafka.sasl_username == "svc-uptake"
    assert type(settings.kafka.sasl_password) is Secret
    assert settings.kafka.sasl_password.reveal() == PASSWORD
    assert settings.kafka.ssl_cafile == str(ca)
    assert PASSWORD not in repr(settings)
    shown = {name: value for name, value, _ in settings.describe()}
    assert shown["UPTAKE_KAFKA_SASL_PASSWORD"] == "(set, hidden)"
    assert all(PASSWORD not in value for value in shown.values())
    override = Settings.from_env(SASL_ENV, sasl_password="plain-override")
    assert type(override.kafka.sasl_password) is Secret


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL"}, "must be one of PLAINTEXT, SSL, SASL_"),
        ({"UPTAKE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl"}, "UPTAKE_KAFKA_SECURITY_PROTOCOL"),
        ({"UPTAKE_KAFKA_SASL_MECHANISM": "GSSAPI"}, "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        (
            {"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            "needs UPTAKE_KAFKA_SASL_USERNAME and UPTAKE_KAFKA_SASL_PASSWORD",
        ),
        (
            {**SASL_ENV, "UPTAKE_KAFKA_SASL_PASSWORD": ""},
            "needs UPTAKE_KAFKA_SASL_USERNAME and UPTAKE_KAFKA_SASL_PASSWORD",
        ),
        ({"UPTAKE_KAFKA_SASL_USERNAME": "u"}, "set it to SASL_SSL or SASL_PLAINTEXT"),
        (
            {**SASL_ENV, "UPTAKE_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "UPTAKE_KAFKA_SSL_CAFILE='/nonexistent/ca.pem': no such file",
        ),
        (
            {"UPTAKE_KAFKA_SSL_CAFILE": __file__},
            "TLS files need SSL or SASL_SSL",
        ),
        (
            {"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SSL", "UPTAKE_KAFKA_SSL_KEYFILE": __file__},
            "UPTAKE_KAFKA_SSL_KEYFILE needs UPTAKE_KAFKA_SSL_CERTFILE",
        ),
    ],
)
def test_kafka_security_validation_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as refused:
        Settings.from_env(env)
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize("raw", ["maybe", "tru", "2"])
def test_an_unknown_boolean_word_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"UPTAKE_LIFECYCLE=.* is not a boolean"):
        Settings.from_env({"UPTAKE_LIFECYCLE": raw})


@pytest.mark.parametrize(("raw", "expected"), [("Off", False), ("YES", True), ("0", False)])
def test_boolean_words_are_read_in_any_case(raw: str, expected: bool) -> None:
    assert Settings.from_env({"UPTAKE_LIFECYCLE": raw}).lifecycle.enabled is expected


def test_an_unknown_log_level_is_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="UPTAKE_LOG_LEVEL must be one of debug, info"):
        Settings.from_env({"UPTAKE_LOG_LEVEL": "verbose"})


def test_an_unknown_boolean_word_is_refused_with_the_variable_and_every_word() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"UPTAKE_CHAOS_IGNORE_WATERMARKS": "enabled"})
    assert str(refused.value) == (
        "UPTAKE_CHAOS_IGNORE_WATERMARKS='enabled' is not a boolean: "
        "use one of 1, true, yes, on, 0, false, no, off"
    )


def test_an_unknown_log_level_names_every_level_and_the_value_given() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"UPTAKE_LOG_LEVEL": "Verbose"})
    assert str(refused.value) == (
        "UPTAKE_LOG_LEVEL must be one of debug, info, warn, warning, error, critical, not 'Verbose'"
    )
    assert Settings.from_env({"UPTAKE_LOG_LEVEL": "WARN"}).log_level == "WARN"  # any case


def test_an_override_that_names_no_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="Settings has no field kafka_bootstrap"):
        Settings.from_env({}, kafka_bootstrap="k:9092")  # the part's field is `bootstrap`


@pytest.mark.parametrize(
    ("part", "prefixes"),
    [
        ("collector", ("UPTAKE_COLLECTOR_",)),
        ("faults", ("UPTAKE_CHAOS_",)),
        ("lifecycle", ("UPTAKE_LIFECYCLE", "UPTAKE_ACTIVATION_", "UPTAKE_CHURN_")),
        ("warehouse", ("UPTAKE_CLICKHOUSE_", "UPTAKE_WRITER", "UPTAKE_CHDB_")),
        ("kafka", ("KAFKA_", "UPTAKE_KAFKA_", "UPTAKE_CONSUMER_GROUP", "UPTAKE_")),
    ],
)
def test_each_part_holds_its_own_variables(part: str, prefixes: tuple[str, ...]) -> None:
    variables = [ENV_OF[name] for name, owner in PART_OF.items() if owner == part]
    assert variables, part
    assert all(v.startswith(prefixes) for v in variables), variables
    if part == "kafka":  # its UPTAKE_* names are topics, and nothing of another component
        assert all("TOPIC" in v or "KAFKA" in v or v == "UPTAKE_CONSUMER_GROUP" for v in variables)
