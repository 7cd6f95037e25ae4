"""The decoder rules of each input topic, built from the ingest settings."""

from __future__ import annotations

from datetime import timedelta

from pipeline.config.settings import Settings
from pipeline.contract.decode import Limits


def live_limits(settings: Settings) -> Limits:
    """The rules of the live events topic."""
    return Limits(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        max_lateness=timedelta(seconds=settings.max_lateness_s),
    )


def backfill_limits(settings: Settings) -> Limits:
    """The rules of the backfill topic: the live ones without the live lateness limit."""
    return Limits(
        max_message_bytes=settings.max_message_bytes,
        max_future_skew=timedelta(seconds=settings.max_future_skew_s),
        max_lateness=timedelta(seconds=settings.backfill_max_age_s),
        too_old_hint="UPTAKE_BACKFILL_MAX_AGE_S sets the limit of backfills",
    )
