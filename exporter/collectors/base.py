"""What every collector shares: it is built on one scrape's result and may ask for calls."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.registry import Collector

from pveapi.inventory import Inventory

from ..scrape import Call, ScrapeResult


@dataclass(frozen=True)
class CollectorOptions:
    pressure: bool = False  # one rrddata call per node
    config: bool = False  # one config call per guest
    deprecated: bool = True  # prometheus-pve-exporter's deprecated byte gauges, as it still exports them
    zeros: bool = True  # prometheus-pve-exporter's 0 for every HA and lock state not held, and qemu's disk usage


class ResultCollector(Collector):
    def __init__(self, result: ScrapeResult, options: CollectorOptions = CollectorOptions()) -> None:
        self._result = result
        self._options = options

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        """The API calls this collector needs beyond /cluster/resources (none by default)."""
        return ()
