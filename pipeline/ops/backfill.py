"""`uptake backfill`: load events older than the live lateness limit from JSONL files.

Validates every input first, with the worker's decoder and the backfill limits, keeping the
valid lines in a spool file; nothing is sent when a line is invalid (unless `skip_invalid`) or an
input is unreadable. Then sends them to the backfill topic and blocks until Kafka acknowledged
every message. Returns a `BackfillReport`; raises `BackfillError`. Docs: docs/backfill.md.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec

from pipeline.config.settings import Settings
from pipeline.contract.decode import BatchDecoder, Limits, SourceMessage
from pipeline.contract.reasons import Reason

EXIT_OK = 0
"""Every line was valid and every event was acknowledged by Kafka (dry run: every line valid)."""
EXIT_FAILED = 1
"""An input could not be read, or Kafka was unreachable or did not acknowledge everything."""
EXIT_INVALID = 3
"""Some lines were invalid: nothing was sent, or with --skip-invalid only the valid ones."""

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
CHUNK_LINES = 5000  # lines decoded at once: one decoder call, bounded memory
MESSAGE_BYTES_CAP = 1_000_000  # below Kafka's default message.max.bytes (1 MiB + 12) with headers
SHOWN_INVALID = 10  # invalid lines printed on stderr; --rejects has them all


class BackfillError(RuntimeError):
    """An input or Kafka problem, with a message for a person."""


@dataclass(slots=True)
class InvalidLine:
    source: str
    line: int
    reason: str
    detail: str
    raw: bytes

    def describe(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}: {self.detail}"

    def as_json(self) -> bytes:
        return msgspec.json.encode(
            {
                "file": self.source,
                "line": self.line,
                "reason": self.reason,
                "detail": self.detail,
                "text": self.raw.decode("utf-8", "replace"),
            }
        )


@dataclass
class BackfillReport:
    """What a backfill did; `exit_code` follows the EXIT_* constants."""

    files: int = 0
    lines: int = 0  # non-blank lines read
    valid: int = 0
    invalid: int = 0
    sent: int = 0  # events Kafka acknowledged
    messages: int = 0
    topic: str = ""
    dry_run: bool = False
    skip_invalid: bool = False
    invalid_by_reason: Counter[str] = field(default_factory=Counter)
    validate_seconds: float = 0.0
    send_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_INVALID if self.invalid else EXIT_OK

    def summary(self) -> list[str]:
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        out = [
            f"read {self.lines:,} lines from {files} in {self.validate_seconds:.1f}s: "
            f"{self.valid:,} valid, {self.invalid:,} invalid"
        ]
        out += [f"  {r:24} {n:10,}" for r, n in sorted(self.invalid_by_reason.items())]
        if self.dry_run:
            out.append("dry run: nothing was sent")
        elif not self.valid and not self.invalid:
            out.append("nothing to send: the input holds no events")
        elif self.invalid and not self.skip_invalid:
            out.append(
                f"nothing was sent: fix the invalid lines and run again, or pass --skip-invalid "
                f"to send the {self.valid:,} valid ones"
            )
        else:
            rate = self.sent / self.send_seconds if self.send_seconds else 0.0
            out.append(
                f"sent {self.sent:,} events in {self.messages:,} messages to {self.topic} "
                f"({rate:,.0f} events/s); the worker loads them from there"
            )
        return out


class Ticker:
    """Progress on stderr: one rewritten line on a terminal, a line every 5 s elsewhere."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.2 if self.tty else 5.0
        self._last = time.monotonic()
        self._shown = False

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.interval

    def show(self, text: str) -> None:
        self._last = time.monotonic()
        self._shown = True
        self.stream.write(f"\r{text}   " if self.tty else f"{text}\n")
        self.stream.flush()

    def done(self) -> None:
        """End a rewritten line, so the next output starts on its own line."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = False
        self._last = time.monotonic()


class Spool:
    """Valid lines with their Kafka key, in a temporary file: the input is read only once."""

    _HEADER = struct.Struct("<HI")

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="uptake-backfill-", buffering=1 << 20)  # noqa: SIM115
        self.count = 0

    def add(self, key: bytes, raw: bytes) -> None:
        self._file.write(self._HEADER.pack(len(key), len(raw)))
        self._file.write(key)
        self._file.write(raw)
        self.count += 1

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        reader = self._file
        reader.flush()
        reader.seek(0)
        header = self._HEADER
        while chunk := reader.read(header.size):
            key_len, raw_len = header.unpack(chunk)
            yield reader.read(key_len), reader.read(raw_len)

    def close(self) -> None:
        self._file.close()


@dataclass
class Input:
    """One opened input: its lines and how far into it we are (for a percentage)."""

    name: str
    lines: Iterator[bytes]
    size: int | None  # bytes on disk (compressed for gzip); None for a pipe
    position: Callable[[], int]


def check_inputs(names: list[str]) -> None:
    """Fail before reading anything when an input is missing or unreadable."""
    if not names:
        raise BackfillError("no input: name one or more JSONL files, or - for stdin")
    if names.count(STDIN) > 1:
        raise BackfillError("stdin (-) can be read only once")
    for name in names:
        if name == STDIN:
            continue
        path = Path(name)
        if not path.exists():
            raise BackfillError(f"{name}: no such file")
        if path.is_dir():
            raise BackfillError(f"{name}: is a directory, not a JSONL file")
        if not os.access(path, os.R_OK):
            raise BackfillError(f"{name}: not readable (permission denied)")


@contextmanager
def open_input(name: str, stdin: BinaryIO | None = None) -> Iterator[Input]:
    """The lines of `name` (`-`: stdin), gunzipped when the data starts with the gzip magic."""
    with ExitStack() as stack:
        if name == STDIN:
            source = stdin if stdin is not None else sys.stdin.buffer
            raw: Any = source if hasattr(source, "peek") else io.BufferedReader(source)
            size = None
        else:
            try:
                raw = stack.enter_context(open(name, "rb"))
            except OSError as exc:
                raise BackfillError(f"{name}: cannot open it ({exc.strerror})") from None
            size = os.fstat(raw.fileno()).st_size or None
        if raw.peek(2)[:2] == GZIP_MAGIC:
            lines: Any = stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif name.endswith(".gz"):
            raise BackfillError(
                f"{name}: not gzip data (a gzip file starts with the bytes 1f 8b); "
                "rename it if it is plain JSONL"
            )
        else:
            lines = raw

        def position() -> int:
            try:
                return int(raw.tell())
            except OSError:  # a pipe
                return 0

        yield Input("<stdin>" if name == STDIN else name, iter(lines), size, position)


def _read_lines(source: Input, first_line: int = 1) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its end) for every non-blank line; input errors explained."""
    number = first_line - 1
    try:
        for number, line in enumerate(source.lines, first_line):
            stripped = line.strip()
            if stripped:
                yield number, stripped
    except EOFError:  # gzip: "Compressed file ended before the end-of-stream marker"
        raise BackfillError(
            f"{source.name}: the gzip data is truncated after line {number}; nothing was sent"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise BackfillError(
            f"{source.name}: bad gzip data after line {number} ({exc}); nothing was sent"
        ) from None
    except OSError as exc:
        raise BackfillError(
            f"{source.name}: read error after line {number} ({exc.strerror or exc})"
        ) from None


class Validator:
    """Judges lines with the worker's decoder; valid ones go to the spool, invalid ones out."""

    def __init__(
        self,
        limits: Limits,
        spool: Spool | None,
        on_invalid: Callable[[InvalidLine], None],
        report: BackfillReport,
    ) -> None:
        self.decoder = BatchDecoder(limits)
        self.spool = spool
        self.on_invalid = on_invalid
        self.report = report

    def judge(self, source: str, lines: list[tuple[int, bytes]]) -> None:
        """Judge numbered lines of one input; each line is one message of one event."""
        messages = []
        raw_of: dict[int, bytes] = {}
        invalid: list[InvalidLine] = []
        for number, line in lines:
            self.report.lines += 1
            if line[:1] == b"[":
                invalid.append(
                    InvalidLine(
                        source,
                        number,
                        str(Reason.SCHEMA_VIOLATION),
                        "one event per line: a JSON object, not an array - at `$`",
                        line,
                    )
                )
                continue
            messages.append(SourceMessage(source, 0, number, line))
            raw_of[number] = line
        batch = self.decoder.decode(messages)
        invalid += (
            InvalidLine(source, r.offset, str(r.reason), r.detail, r.raw) for r in batch.rejections
        )
        for bad in sorted(invalid, key=lambda i: i.line) if invalid else ():
            self.report.invalid += 1
            self.report.invalid_by_reason[bad.reason] += 1
            self.on_invalid(bad)
        self.report.valid += len(batch.events)
        if self.spool is not None:
            for event, number in zip(batch.events, batch.offsets, strict=True):
                key = (event.team or event.service or "").encode()
                self.spool.add(key, raw_of[number])


def validate_inputs(
    names: list[str],
    validator: Validator,
    ticker: Ticker,
    stdin: BinaryIO | None = None,
) -> None:
    """Read and judge every input once, showing lines/s and % of the bytes on disk."""
    report = validator.report
    started = time.monotonic()
    for name in names:
        with open_input(name, stdin) as source:
            report.files += 1
            chunk: list[tuple[int, bytes]] = []
            for numbered in _read_lines(source):
                chunk.append(numbered)
                if len(chunk) >= CHUNK_LINES:
                    validator.judge(source.name, chunk)
                    chunk = []
                    if ticker.due():
                        ticker.show(_validating(source, report.lines, started))
            if chunk:
                validator.judge(source.name, chunk)
    if report.lines >= CHUNK_LINES:
        ticker.show(_validating(None, report.lines, started))
    ticker.done()
    report.validate_seconds = time.monotonic() - started


def _validating(source: Input | None, lines: int, started: float) -> str:
    rate = lines / max(time.monotonic() - started, 1e-9)
    where = f" {source.name}" if source is not None else ""
    share = ""
    if source is not None and source.size:
        share = f"  {min(100.0, 100 * source.position() / source.size):5.1f}%"
    return f"backfill: validated{where}: {lines:,} lines{share}  {rate:,.0f} lines/s"


def send_spool(
    spool: Spool,
    producer: Any,
    topic: str,
    report: BackfillReport,
    ticker: Ticker,
    *,
    per_message: int = 100,
    max_bytes: int = MESSAGE_BYTES_CAP,
    flush_timeout_s: float = 120.0,
) -> None:
    """Send the spooled lines as JSON arrays per key; count only what Kafka acknowledged.

    A message holds at most `per_message` events and `max_bytes` bytes; a line that alone is
    larger is sent as a bare object (the decoder already held it to the message limit).
    Raises BackfillError when Kafka did not acknowledge every message.
    """
    started = time.monotonic()
    total = spool.count
    sent: list[tuple[Any, int]] = []  # (future, events)
    buffers: dict[bytes, list[bytes]] = {}
    sizes: dict[bytes, int] = {}

    def flush(key: bytes) -> None:
        lines = buffers.pop(key)
        sizes.pop(key)
        value = lines[0] if len(lines) == 1 else b"[" + b",".join(lines) + b"]"
        sent.append((producer.send(topic, key=key or None, value=value), len(lines)))

    for queued, (key, raw) in enumerate(spool, 1):
        buffer = buffers.get(key)
        if buffer is not None and sizes[key] + 1 + len(raw) > max_bytes:
            flush(key)
            buffer = None
        if buffer is None:
            buffers[key] = buffer = []
            sizes[key] = 2  # the brackets
        buffer.append(raw)
        sizes[key] += len(raw) + 1
        if len(buffer) >= per_message:
            flush(key)
        if queued % 1000 == 0 and ticker.due():
            ticker.show(_sending(queued, total, started))
    for key in list(buffers):
        flush(key)
    producer.flush(timeout=flush_timeout_s)
    failed = [(future, n) for future, n in sent if not future.is_done or future.failed()]
    report.messages = len(sent) - len(failed)
    report.sent = sum(n for _, n in sent) - sum(n for _, n in failed)
    report.send_seconds = time.monotonic() - started
    if total >= 1000:
        ticker.show(_sending(report.sent, total, started))
    ticker.done()
    if failed:
        first = failed[0][0]
        why = first.exception if first.is_done else "no answer in time"
        raise BackfillError(
            f"Kafka acknowledged {report.sent:,} of {total:,} events; {len(failed):,} messages "
            f"were not acknowledged ({why}). Run the same command again: events keep their "
            "event_id, so the ones already loaded are not counted twice (docs/events.md)"
        )


def _sending(done: int, total: int, started: float) -> str:
    rate = done / max(time.monotonic() - started, 1e-9)
    share = f"  {100 * done / total:5.1f}%" if total else ""
    return f"backfill: sent {done:,}/{total:,} events{share}  {rate:,.0f} events/s"


def run_backfill(
    settings: Settings,
    names: list[str],
    *,
    dry_run: bool = False,
    skip_invalid: bool = False,
    rejects: IO[bytes] | None = None,
    per_message: int = 100,
    show_invalid: Callable[[str], None] | None = None,
    ticker: Ticker | None = None,
    stdin: BinaryIO | None = None,
    producer_factory: Callable[[], Any] | None = None,
) -> BackfillReport:
    """Validate `names`, then (unless `dry_run`, or lines were invalid without `skip_invalid`)
    send the valid events to the backfill topic. Raises BackfillError or KafkaUnavailable."""
    from pipeline.kafka.producer import make_producer
    from pipeline.kafka.security import client_kwargs
    from pipeline.kafka.topics import ensure_topics

    check_inputs(names)
    ticker = ticker or Ticker()
    say = show_invalid or (lambda text: print(text, file=sys.stderr))
    report = BackfillReport(
        topic=settings.kafka.backfill_topic, dry_run=dry_run, skip_invalid=skip_invalid
    )
    if not dry_run:  # fail fast: no broker means a clear error before a long validation
        ensure_topics(
            settings.kafka.bootstrap,
            {settings.kafka.backfill_topic: settings.kafka.topic_partitions},
            timeout_s=10.0,
            security=client_kwargs(settings.kafka),
        )

    def on_invalid(line: InvalidLine) -> None:
        if rejects is not None:
            rejects.write(line.as_json() + b"\n")
        if report.invalid <= SHOWN_INVALID:
            ticker.done()
            say(line.describe())

    spool = None if dry_run else Spool()
    try:
        validator = Validator(settings.ingest.limits(backfill=True), spool, on_invalid, report)
        validate_inputs(names, validator, ticker, stdin)
        if report.invalid > SHOWN_INVALID:
            more = report.invalid - SHOWN_INVALID
            where = "all are in the --rejects file" if rejects else "--rejects FILE lists all"
            say(f"... and {more:,} more invalid lines ({where})")
        if spool is None or (report.invalid and not skip_invalid) or not spool.count:
            return report
        factory = producer_factory or (
            lambda: make_producer(
                settings.kafka.bootstrap,
                client_id="uptake-backfill",
                compression=settings.kafka.compression,
                max_request_size=max(8 << 20, 2 * settings.ingest.max_message_bytes),
                **client_kwargs(settings.kafka),
            )
        )
        producer = factory()
        try:
            send_spool(
                spool,
                producer,
                settings.kafka.backfill_topic,
                report,
                ticker,
                per_message=per_message,
                max_bytes=min(settings.ingest.max_message_bytes, MESSAGE_BYTES_CAP),
            )
        finally:
            producer.close()
        return report
    finally:
        if spool is not None:
            spool.close()
