"""argparse types shared by the subcommands: precise messages for bad numbers."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from functools import partial
from typing import TypeVar

N = TypeVar("N", int, float)


def _whole(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _real(text: str, unit: str = "") -> float:
    try:
        return float(text)
    except ValueError:
        of = f" of {unit}" if unit else ""
        raise argparse.ArgumentTypeError(f"{text!r} is not a number{of}") from None


def _checked(
    read: Callable[[str], N], accept: Callable[[N], bool], rule: str
) -> Callable[[str], N]:
    """A type that `read`s the text and refuses a value `accept` rejects: "TEXT `rule`"."""

    def parse(text: str) -> N:
        value = read(text)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text} {rule}")
        return value

    return parse


positive_int = _checked(_whole, lambda v: v >= 1, "must be at least 1")
non_negative_int = _checked(_whole, lambda v: v >= 0, "must be 0 or more")
seconds = _checked(partial(_real, unit="seconds"), lambda v: v > 0, "must be more than 0 seconds")
days = _checked(partial(_real, unit="days"), lambda v: v > 0, "must be more than 0 days")
non_negative_float = _checked(_real, lambda v: v >= 0, "must not be negative")
positive_float = _checked(_real, lambda v: 0 < v < math.inf, "must be a number more than 0")


def listen_port(text: str) -> int:
    """A TCP port to listen on; 0 asks for any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0-65535)")
    return value


def port(text: str) -> int:
    value = _whole(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 1 and 65535, not {value}")
    return value


def at_most(limit: int, what: str) -> Callable[[str], int]:
    """A positive whole number no larger than `limit`; `what` names it in the message."""

    def parse(text: str) -> int:
        value = positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"{value} {what}: {limit} at most")
        return value

    return parse


def fraction(text: str) -> float:
    """A number in (0, 1], e.g. 0.8 (80 %)."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be a fraction between 0 and 1, e.g. 0.8")
    return value


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds, written `90`, `90s`, `5m` or `1h`."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _UNITS else (text, "s")
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (examples: 90, 90s, 5m, 1h)"
        ) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value
