"""Reading a process's /metrics page in tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Samples of a /metrics page keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str) -> float:
    """The sum of every series of `name`."""
    return sum(value for (n, _), value in samples.items() if n == name)


def scrape_totals(url: str) -> dict[str, float]:
    """Each sample name of a /metrics page with the sum over its labels."""
    totals: dict[str, float] = {}
    for (name, _), value in scrape(url).items():
        totals[name] = totals.get(name, 0.0) + value
    return totals
