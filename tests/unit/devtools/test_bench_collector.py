"""`make bench-collector`'s reading of hey's summary (the text of hey v0.1.4)."""

from __future__ import annotations

import pytest

from pipeline.devtools.bench_collector import parse_hey

HEY_SUMMARY = """
Summary:
  Total:\t10.0125 secs
  Slowest:\t0.3021 secs
  Fastest:\t0.0011 secs
  Average:\t0.0215 secs
  Requests/sec:\t2947.6102

Latency distribution:
  10% in 0.0052 secs
  50% in 0.0159 secs
  90% in 0.0421 secs
  99% in 0.1483 secs

Status code distribution:
  [200]\t29480 responses
  [503]\t12 responses
"""


def test_the_summary_gives_requests_per_second_percentiles_and_statuses() -> None:
    figures = parse_hey(HEY_SUMMARY)
    assert figures == {
        "requests_per_s": 2947.6,
        "p50_ms": 15.9,
        "p99_ms": 148.3,
        "responses": {200: 29480, 503: 12},
    }


def test_output_without_a_summary_is_an_error_showing_it() -> None:
    with pytest.raises(RuntimeError, match=r"hey printed no summary:\n.*connection refused"):
        parse_hey("Get http://127.0.0.1:1: connection refused")
