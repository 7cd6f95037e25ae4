"""The emitter SDK as `pipeline.sdk`: the `uptake-sdk` distribution (`uptake_sdk`), strict.

New services install the slim `uptake-sdk` and use `uptake_sdk.UptakeClient`, which never raises
into the host (docs/sdk.md). This module keeps `from pipeline.sdk import UptakeClient` (and
`from pipeline import UptakeClient`) working for existing users with the behaviour they had:
`strict=True`, so the constructor connects and raises `DeliveryError` when no broker answers,
`emit()` raises `InvalidEvent`, and `flush()` / `close()` raise `DeliveryError` naming the events
not acknowledged in time. The producer is `pipeline.kafka.producer.make_producer`'s, and a
`pipeline.contract.decode.Limits` is accepted as before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import uptake_sdk
from uptake_sdk import (
    MESSAGE_TARGET_BYTES,
    DeliveryError,
    InvalidEvent,
    UptakeError,
    api_call,
    deploy,
    feedback,
    incident,
    model_training,
    pack_messages,
    rfc3339,
)

from pipeline.config.settings import DEFAULT_KAFKA_COMPRESSION
from pipeline.contract.decode import Limits
from pipeline.kafka.producer import make_producer

__all__ = [
    "MESSAGE_TARGET_BYTES",
    "DeliveryError",
    "InvalidEvent",
    "UptakeClient",
    "api_call",
    "deploy",
    "feedback",
    "incident",
    "model_training",
    "pack_messages",
    "rfc3339",
]


class UptakeClient(uptake_sdk.UptakeClient):
    """`uptake_sdk.UptakeClient` with `strict=True` and a 30 s `timeout_s` by default (see the
    module docstring); every other option of `uptake_sdk.UptakeClient` is accepted."""

    def __init__(
        self,
        bootstrap_servers: str | Sequence[str] | None = None,
        topic: str = "uptake.events",
        *,
        batch_events: int = 100,
        linger_ms: int = 50,
        source: str | None = None,
        timeout_s: float = 30.0,
        limits: Limits | uptake_sdk.Limits | None = None,
        producer_config: Mapping[str, Any] | None = None,
        compression: str = DEFAULT_KAFKA_COMPRESSION,
        strict: bool = True,
        on_error: Callable[[UptakeError], None] | None = None,
        **options: Any,
    ) -> None:
        if isinstance(limits, Limits):  # the same class, loaded from the worker's package
            limits = uptake_sdk.Limits(**dataclasses.asdict(limits))
        options.setdefault("producer_factory", make_producer)
        super().__init__(
            bootstrap_servers,
            topic,
            batch_events=batch_events,
            linger_ms=linger_ms,
            source=source,
            timeout_s=timeout_s,
            limits=limits,
            producer_config=producer_config,
            compression=compression,
            strict=strict,
            on_error=on_error,
            **options,
        )
