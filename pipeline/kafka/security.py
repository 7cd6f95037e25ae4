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

from pipeline.config.settings import Settings


def uses_ssl(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: verifies the broker against UPTAKE_KAFKA_SSL_CAFILE (else the
    system's CAs), presents UPTAKE_KAFKA_SSL_CERTFILE/KEYFILE when set (mutual TLS)."""
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(
            settings.kafka_ssl_certfile, keyfile=settings.kafka_ssl_keyfile or None
        )
    return context


def _protocol_and_sasl(settings: Settings) -> dict[str, Any]:
    """The keyword arguments kafka-python and aiokafka name alike."""
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_sasl(settings):
        out["sasl_mechanism"] = settings.kafka_sasl_mechanism
        out["sasl_plain_username"] = settings.kafka_sasl_username
        out["sasl_plain_password"] = settings.kafka_sasl_password.reveal()
    return out


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """kafka-python client keyword arguments for the security settings ({} for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out = _protocol_and_sasl(settings)
    if uses_ssl(settings):
        out["ssl_check_hostname"] = True
        if settings.kafka_ssl_cafile:
            out["ssl_cafile"] = settings.kafka_ssl_cafile
        if settings.kafka_ssl_certfile:
            out["ssl_certfile"] = settings.kafka_ssl_certfile
        if settings.kafka_ssl_keyfile:
            out["ssl_keyfile"] = settings.kafka_ssl_keyfile
    return out


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka client keyword arguments ({} for PLAINTEXT): aiokafka takes an SSLContext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    out = _protocol_and_sasl(settings)
    if uses_ssl(settings):
        out["ssl_context"] = ssl_context(settings)
    return out


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for faust.App: SASLCredentials, SSLCredentials or None."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.reveal(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def faust_options(settings: Settings) -> dict[str, Any]:
    """Extra `faust.App(...)` options: {"broker_credentials": ...}, or {} for PLAINTEXT."""
    credentials = faust_credentials(settings)
    return {} if credentials is None else {"broker_credentials": credentials}
