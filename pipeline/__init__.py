"""Uptake: platform-adoption telemetry from Kafka to ClickHouse."""

__version__ = "0.1.0"
