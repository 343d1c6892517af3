"""One collector per concern; each turns a `ScrapeResult` into metric families, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.registry import CollectorRegistry

from ..scrape import Concern, ScrapeResult
from ..target import TargetStats
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

    def concerns(self) -> list[type[Concern]]:
        enabled: list[type[Concern]] = [StatusCollector, ResourcesCollector, NodeStatusCollector, ClusterCollector]
        if self.pressure:
            enabled.append(PressureCollector)
        if self.config:
            enabled.append(GuestConfigCollector)
        return enabled


def cluster_registry(result: ScrapeResult, options: CollectorOptions) -> CollectorRegistry:
    """The PVE metrics of one scrape (what backfill writes)."""
    registry = CollectorRegistry(auto_describe=False)
    for concern in options.concerns():
        registry.register(concern(result))
    return registry


def scrape_registry(result: ScrapeResult, options: CollectorOptions, stats: TargetStats) -> CollectorRegistry:
    """What one HTTP scrape answers: the PVE metrics plus the exporter's own."""
    registry = cluster_registry(result, options)
    registry.register(SelfCollector(result, stats))
    return registry
