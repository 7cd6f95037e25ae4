"""Where every Uptake process's log lines go, and in which format (docs/operations.md#logs).

`configure()` is the one place logging is set up: the CLI calls it before any command runs,
and the long-running processes (worker, writer, collector) call it again with their component
name and level once their settings are read. Every line goes to stderr, either as text
(`2026-01-05 10:00:00,123 WARNING uptake.worker: ...`, the default) or, with
`UPTAKE_LOG_FORMAT=json`, as one JSON object per line with the fields of `JSON_FIELDS` plus any
`extra=` the code passes (e.g. `topic`, `partition`, `offset`). Exceptions are in `exc_info`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

from pipeline.config.settings import check_log_format

FORMAT_VARIABLE = "UPTAKE_LOG_FORMAT"
# Fields of every JSON line: ISO 8601 UTC time, level name, logger name, the message, the
# process (`worker`, `collector`, `writer`, or the CLI command) and its pid.
JSON_FIELDS = ("timestamp", "level", "logger", "message", "component", "pid")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_format = ["text"]  # what configure() last set up


class _UptakeHandler(logging.StreamHandler):
    """The handler `configure()` installs (a second call replaces it). It writes to the
    `sys.stderr` of the moment, so a replaced stderr (pytest's capture) never goes stale."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def log_format(environ: Mapping[str, str] | None = None) -> str:
    """UPTAKE_LOG_FORMAT of the environment (default text); SettingsError for an unknown word.

    The CLI needs the format before a command reads its settings; `Settings.validate` applies
    the same rule to the same variable."""
    return check_log_format(
        (os.environ if environ is None else environ).get(FORMAT_VARIABLE) or "text"
    )


def formatter(fmt: str, component: str) -> logging.Formatter:
    """The formatter of `fmt` ("text" or "json") for the process `component`."""
    if fmt == "json":
        return JsonFormatter(
            "{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
            static_fields={"component": component},
            timestamp=True,
        )
    return logging.Formatter(TEXT_FORMAT)


def configure(
    component: str,
    *,
    fmt: str = "text",
    level: int | str = logging.WARNING,
    uptake_level: int | str | None = None,
) -> None:
    """Send every logger's records to stderr in `fmt`: the root at `level`, Uptake's own
    loggers (`uptake.*`) at `uptake_level` when given. Replaces what an earlier call set up."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _UptakeHandler)]:
        root.removeHandler(old)
    handler = _UptakeHandler()
    handler.setFormatter(formatter(fmt, component))
    root.addHandler(handler)
    _format[0] = fmt
    root.setLevel(_level(level))
    uptake = logging.getLogger("uptake")
    uptake.setLevel(_level(uptake_level) if uptake_level is not None else logging.NOTSET)


def _level(level: int | str) -> int | str:
    return (
        level if isinstance(level, int) else {"warn": "WARNING"}.get(level.lower(), level.upper())
    )


def announce(logger: logging.Logger, message: str, level: int = logging.INFO) -> None:
    """A line for the person at the terminal (a process starts or stops, a command fails):
    printed to stderr as it is in text format, a record of `logger` at `level` in JSON format
    (stderr stays one object a line)."""
    if _format[0] == "json":
        logger.log(level, "%s", message)
    else:
        print(message, file=sys.stderr, flush=True)
