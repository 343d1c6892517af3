"""What every collector shares: it is built on one scrape's result and may ask for calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.registry import Collector

from pveapi.inventory import Inventory

from ..scrape import Call, CallKey, ScrapeResult


@dataclass(frozen=True)
class CollectorOptions:
    pressure: bool = False  # one rrddata call per node
    config: bool = False  # one config call per guest
    deprecated: bool = True  # prometheus-pve-exporter's deprecated byte gauges, as it still exports them
    zeros: bool = True  # prometheus-pve-exporter's 0 for every HA and lock state not held, and qemu's disk usage
    replication: bool = True  # replication jobs: one cached call, plus one per node holding a replicated guest
    qdevice: bool = True  # the QDevice: one call per scrape when one is configured, every 5 minutes otherwise


class ResultCollector(Collector):
    def __init__(self, result: ScrapeResult, options: CollectorOptions = CollectorOptions()) -> None:
        self._result = result
        self._options = options

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        """The API calls this collector needs beyond /cluster/resources (none by default)."""
        return ()

    @staticmethod
    def follow_up(inventory: Inventory, answers: Mapping[CallKey, Any]) -> Iterable[Call]:
        """Calls that depend on the `answers` of `calls()` (none by default)."""
        return ()
