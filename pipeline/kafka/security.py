"""Kafka security settings (UPTAKE_KAFKA_*) turned into what each Kafka client library takes.

- `client_kwargs(settings)`: keyword arguments of kafka-python's KafkaProducer, KafkaConsumer
  and KafkaAdminClient (`security_protocol`, `sasl_mechanism`, `sasl_plain_username`, ...).
  Empty for PLAINTEXT, so a plaintext setup passes exactly what it passed before.
- `faust_credentials(settings)`: the `broker_credentials` of `faust.App` (faust-streaming
  0.15.3: `faust.SASLCredentials` / `faust.SSLCredentials`), or None for PLAINTEXT.
- `ssl_context(settings)`: the `ssl.SSLContext` used with SSL and SASL_SSL (for aiokafka).

Every Kafka client Uptake creates passes these, so one set of variables secures all of them.
"""

from __future__ import annotations

import ssl
from typing import Any

from pipeline.config.settings import KafkaSettings, Settings


def _part(settings: Settings | KafkaSettings) -> KafkaSettings:
    return settings.kafka if isinstance(settings, Settings) else settings


def uses_ssl(settings: Settings | KafkaSettings) -> bool:
    kafka = _part(settings)
    return kafka.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings | KafkaSettings) -> bool:
    kafka = _part(settings)
    return kafka.security_protocol.startswith("SASL_")


def ssl_context(settings: Settings | KafkaSettings) -> ssl.SSLContext:
    """A client TLS context: verifies the broker against UPTAKE_KAFKA_SSL_CAFILE (else the
    system's CAs), presents UPTAKE_KAFKA_SSL_CERTFILE/KEYFILE when set (mutual TLS)."""
    kafka = _part(settings)
    context = ssl.create_default_context(cafile=kafka.ssl_cafile or None)
    if kafka.ssl_certfile:
        context.load_cert_chain(kafka.ssl_certfile, keyfile=kafka.ssl_keyfile or None)
    return context


def _protocol_and_sasl(settings: Settings | KafkaSettings) -> dict[str, Any]:
    """The keyword arguments kafka-python and aiokafka name alike."""
    kafka = _part(settings)
    out: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    if uses_sasl(settings):
        out["sasl_mechanism"] = kafka.sasl_mechanism
        out["sasl_plain_username"] = kafka.sasl_username
        out["sasl_plain_password"] = kafka.sasl_password.reveal()
    return out


def client_kwargs(settings: Settings | KafkaSettings) -> dict[str, Any]:
    """kafka-python client keyword arguments for the security settings ({} for PLAINTEXT)."""
    kafka = _part(settings)
    if kafka.security_protocol == "PLAINTEXT":
        return {}
    out = _protocol_and_sasl(kafka)
    if uses_ssl(kafka):
        files = {
            "ssl_cafile": kafka.ssl_cafile,
            "ssl_certfile": kafka.ssl_certfile,
            "ssl_keyfile": kafka.ssl_keyfile,
        }
        out.update(ssl_check_hostname=True, **{name: path for name, path in files.items() if path})
    return out


def aiokafka_kwargs(settings: Settings | KafkaSettings) -> dict[str, Any]:
    """aiokafka client keyword arguments ({} for PLAINTEXT): aiokafka takes an SSLContext."""
    kafka = _part(settings)
    out = {k: v for k, v in client_kwargs(kafka).items() if not k.startswith("ssl_")}
    return out | {"ssl_context": ssl_context(kafka)} if uses_ssl(kafka) else out


def faust_credentials(settings: Settings | KafkaSettings) -> Any:
    """`broker_credentials` for faust.App: SASLCredentials, SSLCredentials or None."""
    import faust

    kafka = _part(settings)

    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.reveal(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def faust_options(settings: Settings | KafkaSettings) -> dict[str, Any]:
    """Extra `faust.App(...)` options: {"broker_credentials": ...}, or {} for PLAINTEXT."""
    credentials = faust_credentials(settings)
    return {} if credentials is None else {"broker_credentials": credentials}
