"""The exporter's own metrics for one target: did the scrape work, how long, which calls failed."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..scrape import ScrapeResult
from ..target import TargetStats
from .families import gauge


class SelfCollector(Collector):
    def __init__(self, result: ScrapeResult, stats: TargetStats) -> None:
        self._result = result
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        success = gauge("pvebalance_exporter_scrape_success", "1 if /cluster/resources answered", ["cluster"])
        success.add_metric([self._result.cluster], 1 if self._result.success else 0)
        duration = gauge(
            "pvebalance_exporter_scrape_duration_seconds",
            "Seconds from this scrape's first API call until every answer was in or the deadline passed",
            ["cluster"],
        )
        duration.add_metric([self._result.cluster], self._result.duration)
        yield success
        yield duration
        yield from self._stats.families()
