"""What every collector shares: it is built on one scrape's result and may ask for calls."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.registry import Collector

from pveapi.inventory import Inventory

from ..scrape import Call, ScrapeResult


class ResultCollector(Collector):
    def __init__(self, result: ScrapeResult) -> None:
        self._result = result

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        """The API calls this collector needs beyond /cluster/resources (none by default)."""
        return ()
