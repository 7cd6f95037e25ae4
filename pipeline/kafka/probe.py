"""Is a Kafka broker there? A bounded probe that never raises (`broker_answers`)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping
from typing import Any


def broker_answers(
    bootstrap: str, timeout: float = 3.0, *, security: Mapping[str, Any] | None = None
) -> bool:
    """True if a Kafka broker at `bootstrap` answers a real metadata request.

    `bootstrap` is "host:port[,host:port...]". First a plain TCP connect is tried, so a
    closed port gives False at once. Then kafka-python bootstraps and sends a metadata
    request, with `timeout` for each step, so the call returns in about 2 x `timeout` at
    most. No exception escapes: every failure gives False.
    """
    try:
        addresses = _parse_bootstrap(bootstrap)
        if addresses and not any(port_open(host, port, timeout) for host, port in addresses):
            return False
        return _metadata_round_trip(bootstrap, timeout, security)
    except Exception:
        return False


def _metadata_round_trip(
    bootstrap: str, timeout: float, security: Mapping[str, Any] | None = None
) -> bool:
    from kafka import KafkaAdminClient

    ms = max(100, int(timeout * 1000))
    wanted = {
        "bootstrap_servers": bootstrap,
        "client_id": "uptake-broker-probe",
        "request_timeout_ms": ms,
        "bootstrap_timeout_ms": ms,  # kafka-python 3.x
        "api_version_auto_timeout_ms": ms,  # kafka-python 2.x
        "reconnect_backoff_max_ms": 1000,
        **(security or {}),
    }
    # Both kafka-python 2.x and 3.x reject unknown configs, so pass only those they know.
    known = getattr(KafkaAdminClient, "DEFAULT_CONFIG", wanted)
    admin = None
    try:
        admin = KafkaAdminClient(**{k: v for k, v in wanted.items() if k in known})
        admin.list_topics()  # a MetadataRequest round trip
        return True
    except Exception:
        return False
    finally:
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()


def _parse_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """[(host, port)] of "host:port,[v6]:port"; entries that do not parse are left out."""
    out = []
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
