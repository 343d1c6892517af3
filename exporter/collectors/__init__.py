"""One collector per concern; each turns a `ScrapeResult` into metric families, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from pveapi.inventory import Inventory

from ..scrape import ScrapeResult
from ..target import TargetStats
from .base import ResultCollector
from .cluster import ClusterCollector
from .guest_config import GuestConfigCollector
from .node_status import NodeStatusCollector
from .pressure import PressureCollector
from .resources import ResourcesCollector
from .self_metrics import SelfCollector
from .status import StatusCollector


@dataclass(frozen=True)
class CollectorOptions:
    pressure: bool = False  # one rrddata call per node
    config: bool = False  # one config call per guest

    def concerns(self) -> list[type[ResultCollector]]:
        enabled: list[type[ResultCollector]] = [StatusCollector, ResourcesCollector, NodeStatusCollector, ClusterCollector]
        if self.pressure:
            enabled.append(PressureCollector)
        if self.config:
            enabled.append(GuestConfigCollector)
        return enabled


def cluster_registry(
    result: ScrapeResult, options: CollectorOptions, exclude: tuple[type[ResultCollector], ...] = ()
) -> CollectorRegistry:
    """The PVE metrics of one scrape (what backfill writes), less the `exclude`d collectors."""
    registry = CollectorRegistry(auto_describe=False)
    for concern in options.concerns():
        if concern not in exclude:
            registry.register(concern(result))
    return registry


def resources_registry(inventory: Inventory) -> CollectorRegistry:
    """The families that need /cluster/resources alone: most samples, ready before the rest."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResourcesCollector(ScrapeResult(cluster="", inventory=inventory)))
    return registry


def rest_registry(result: ScrapeResult, options: CollectorOptions, stats: TargetStats) -> CollectorRegistry:
    """What an HTTP scrape answers besides `resources_registry`: other PVE metrics, self-metrics."""
    registry = cluster_registry(result, options, exclude=(ResourcesCollector,))
    registry.register(SelfCollector(result, stats))
    return registry
