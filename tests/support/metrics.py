"""Reading a service's Prometheus exposition in tests and benches."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(base: str, timeout: float = 5.0) -> str:
    """The exposition text of the service at `base` (`http://host:port`)."""
    with urllib.request.urlopen(base + "/metrics", timeout=timeout) as resp:
        return str(resp.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` (all label sets) whose labels include `labels`."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
