"""Fixtures and helpers for the metrics tests: scraping real endpoints and reading samples."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.downloads.conftest import media, media_root, own_stack  # noqa: F401  fixtures reused here
from tests.support.stack import Gateway, Service, Stack

TINY_TIER = "tiny"
TINY_QUOTA = 2


@dataclass(frozen=True)
class Samples:
    """One scrape: every sample by name, each with its labels and value."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Samples:
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def value(self, name: str, **labels: str) -> float:
        """Return the value of the sample with exactly these labels, or 0 when there is none."""
        for sample_labels, value in self.samples.get(name, []):
            if all(sample_labels.get(key) == wanted for key, wanted in labels.items()):
                if len(sample_labels) == len(labels):
                    return value
        return 0.0

    def label_values(self, name: str, label: str) -> set[str]:
        return {labels[label] for labels, _ in self.samples.get(name, []) if label in labels}

    def created_series(self) -> list[str]:
        """Return the names of prometheus_client's `<name>_created` timestamp series in the scrape."""
        return sorted(name for name in self.samples if name.endswith("_created"))


def scrape_service(service: Service) -> Samples:
    response = httpx.get(service.metrics_url, timeout=10)
    assert response.status_code == 200, response.text
    return Samples.parse(response.text)


def scrape_gateway(gateway: Gateway) -> Samples:
    assert gateway.metrics_token is not None
    response = httpx.get(
        f"{gateway.base_url}/metrics",
        headers={"Authorization": f"Bearer {gateway.metrics_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Samples.parse(response.text)


def scrape_until(
    scrape: Callable[[], Samples], condition: Callable[[Samples], bool], timeout: float = 30
) -> Samples:
    """Scrape until `condition` holds, for figures that a process updates after it replied."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape()
        if condition(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"the condition never held within {timeout} s; last scrape: {samples}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def metrics_stack() -> Iterator[Stack]:
    """A gateway and a downloader with fast retries, and a key tier with a tiny request budget."""
    stack = Stack.create(
        DOWNLOADER_MAX_ATTEMPTS="2",
        DOWNLOADER_RETRY_BASE_DELAY="0.2",
        RATE_LIMIT_TIERS=json.dumps({TINY_TIER: {"requests": f"{TINY_QUOTA}/minute"}}),
    )
    yield stack
    stack.close()


@pytest.fixture(scope="session")
def gateway(metrics_stack: Stack) -> Gateway:
    return metrics_stack.start_gateway()


@pytest.fixture(scope="session")
def downloader(metrics_stack: Stack, gateway: Gateway) -> Service:
    return metrics_stack.start_downloader()


@pytest.fixture
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with gateway.client(timeout=30) as client:
        yield client
