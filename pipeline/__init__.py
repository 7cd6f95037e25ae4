"""Uptake: platform-adoption telemetry from Kafka to ClickHouse."""

__version__ = "0.1.0"

from pipeline.sdk import DeliveryError, InvalidEvent, UptakeClient

__all__ = ["DeliveryError", "InvalidEvent", "UptakeClient", "__version__"]
