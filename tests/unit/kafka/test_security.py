"""pipeline.kafka.security: the UPTAKE_KAFKA_* settings mapped to each client library."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from pipeline.config.settings import Settings
from pipeline.devtools.broker import LocalBroker
from pipeline.kafka.security import aiokafka_kwargs, client_kwargs, faust_options, ssl_context
from pipeline.kafka.topics import unreachable_message

PASSWORD = "pw-never-shown"
SASL = {
    "UPTAKE_KAFKA_SASL_USERNAME": "svc",
    "UPTAKE_KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.fixture(scope="module")
def cafile() -> str:
    """A real PEM CA bundle, so ssl.create_default_context can load it."""
    path = ssl.get_default_verify_paths().cafile
    return path if path and Path(path).is_file() else certifi_where()


def certifi_where() -> str:
    certifi = pytest.importorskip("certifi")
    return str(certifi.where())


def test_plaintext_adds_nothing() -> None:
    settings = Settings.from_env({})
    assert client_kwargs(settings) == {}
    assert aiokafka_kwargs(settings) == {}
    assert faust_options(settings) == {}


def test_sasl_plaintext_maps_to_kafka_python_and_faust() -> None:
    settings = Settings.from_env({"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL})
    assert client_kwargs(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "svc",
        "sasl_plain_password": PASSWORD,
    }
    assert type(client_kwargs(settings)["sasl_plain_password"]) is str  # not the Secret
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert PASSWORD not in repr(credentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "svc",
        "sasl_plain_password": PASSWORD,
        "ssl_context": None,
    }


def test_sasl_ssl_with_scram_and_a_ca_file(cafile: str) -> None:
    settings = Settings.from_env(
        {
            "UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "UPTAKE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "UPTAKE_KAFKA_SSL_CAFILE": cafile,
            **SASL,
        }
    )
    kwargs = client_kwargs(settings)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["ssl_cafile"] == cafile
    assert kwargs["ssl_check_hostname"] is True
    auth = credentials_to_aiokafka_auth(faust_options(settings)["broker_credentials"])
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    aio = aiokafka_kwargs(settings)
    assert aio["security_protocol"] == "SASL_SSL" and isinstance(aio["ssl_context"], ssl.SSLContext)


def test_ssl_only_maps_to_ssl_credentials(cafile: str) -> None:
    settings = Settings.from_env(
        {"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SSL", "UPTAKE_KAFKA_SSL_CAFILE": cafile}
    )
    assert client_kwargs(settings) == {
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": cafile,
    }
    credentials = faust_options(settings)["broker_credentials"]
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


def test_a_bad_client_certificate_fails_when_the_context_is_built(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not a certificate")
    settings = Settings.from_env(
        {"UPTAKE_KAFKA_SECURITY_PROTOCOL": "SSL", "UPTAKE_KAFKA_SSL_CERTFILE": str(cert)}
    )
    assert client_kwargs(settings)["ssl_certfile"] == str(cert)
    with pytest.raises(ssl.SSLError):
        ssl_context(settings)


@pytest.mark.parametrize("client", [KafkaProducer, KafkaConsumer, KafkaAdminClient])
def test_every_kwarg_is_a_config_kafka_python_knows(client: type) -> None:
    settings = Settings.from_env(
        {
            "UPTAKE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "UPTAKE_KAFKA_SSL_CAFILE": __file__,
            "UPTAKE_KAFKA_SSL_CERTFILE": __file__,
            "UPTAKE_KAFKA_SSL_KEYFILE": __file__,
            **SASL,
        }
    )
    assert set(client_kwargs(settings)) <= set(client.DEFAULT_CONFIG)  # type: ignore[attr-defined]


def test_the_local_broker_renders_a_sasl_plain_listener(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, port=19000, sasl_port=19005, sasl_users={"u": "p-1"})
    broker._render_config()
    text = broker.properties_file.read_text()
    last: dict[str, str] = {}  # later keys win in a .properties file
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            last[key] = value
    assert last["listeners"] == (
        "PLAINTEXT://127.0.0.1:19000,SASL_PLAINTEXT://127.0.0.1:19005,CONTROLLER://127.0.0.1:19001"
    )
    assert last["listener.name.sasl_plaintext.sasl.enabled.mechanisms"] == "PLAIN"
    assert 'user_u="p-1";' in last["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    plain = LocalBroker(tmp_path / "plain", port=19000)
    plain._render_config()
    assert "SASL" not in plain.properties_file.read_text()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sasl_port": 19005}, "needs sasl_users"),
        ({"sasl_port": 19000, "sasl_users": {"u": "p"}}, "must differ"),
        ({"sasl_port": 19005, "sasl_users": {"u": 'p"; x'}}, "unusable SASL"),
    ],
)
def test_the_local_broker_refuses_an_unusable_sasl_setup(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LocalBroker(tmp_path, port=19000, **kwargs)


def test_the_unreachable_message_names_what_to_check_per_protocol() -> None:
    assert "UPTAKE_KAFKA" not in unreachable_message("k:9092")
    sasl = unreachable_message("k:9092", {"security_protocol": "SASL_SSL"})
    assert "UPTAKE_KAFKA_SASL_PASSWORD" in sasl and "UPTAKE_KAFKA_SSL_CAFILE" in sasl
    assert "UPTAKE_KAFKA_SASL" not in unreachable_message("k:9092", {"security_protocol": "SSL"})
