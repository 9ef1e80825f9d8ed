"""Help texts of the Nadzu metrics: one style in every service."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.core import Metric

# Importing a service's metrics module registers its metrics in prometheus_client's default registry.
import nadzu_auth.metrics  # noqa: F401
import nadzu_contributions.metrics  # noqa: F401
import nadzu_gateway.metrics  # noqa: F401
from nadzu_downloader.metrics import JobStatusCollector


def nadzu_families() -> list[Metric]:
    # Only a running downloader registers its job-record collector, so its family is added here.
    families = [JobStatusCollector._family()]
    families += [family for family in REGISTRY.collect() if family.name.startswith("nadzu_")]
    return families


def test_every_service_has_metrics() -> None:
    prefixes = {family.name.split("_")[1] for family in nadzu_families()}

    assert prefixes >= {"auth", "contributions", "downloader", "downloads", "gateway"}, prefixes


def test_help_texts_without_final_period() -> None:
    for family in nadzu_families():
        assert family.documentation, f"{family.name} has no help text"
        assert not family.documentation.endswith("."), f"{family.name}: {family.documentation!r}"
