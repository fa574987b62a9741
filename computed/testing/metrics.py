"""Reading a worker's Prometheus endpoint, as a scraper does.

A driver author's tests, and the project's, check what a live worker
exposes with :func:`scrape` and :func:`sample_value` (or read the raw text
with :func:`exposition`).
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from computed.testing._procs import LOOPBACK

__all__ = ["exposition", "sample_value", "scrape"]


def exposition(port: int, address: str = LOOPBACK, timeout: float = 10) -> str:
    """The text the endpoint at ``address:port`` serves now, as a scraper reads it."""
    url = f"http://{address}:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        if response.status != 200:
            raise AssertionError(f"{url} answered {response.status}")
        return str(response.read().decode())


def scrape(port: int, address: str = LOOPBACK, timeout: float = 10) -> list[Sample]:
    """Every sample the endpoint at ``address:port`` serves now."""
    text = exposition(port, address, timeout)
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def sample_value(samples: list[Sample], name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``; None if there is none."""
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    return found[0] if found else None
