"""One collector per concern; each turns a `ScrapeResult` into metric families, no I/O."""

from __future__ import annotations

from prometheus_client.registry import CollectorRegistry

from pveapi.inventory import Inventory

from ..scrape import ScrapeResult
from ..target import TargetStats
from .backup import BackupCollector
from .base import CollectorOptions, ResultCollector
from .cluster import ClusterCollector
from .guest_config import GuestConfigCollector
from .node_status import NodeStatusCollector
from .pressure import PressureCollector
from .qdevice import QDeviceCollector
from .replication import ReplicationCollector
from .resources import ResourcesCollector
from .self_metrics import SelfCollector
from .status import StatusCollector
from .subscription import SubscriptionCollector

__all__ = ["CollectorOptions", "cluster_registry", "concerns", "resources_registry", "rest_registry"]


def concerns(options: CollectorOptions) -> list[type[ResultCollector]]:
    """The collectors `options` turns on, each asking for its own calls."""
    enabled: list[type[ResultCollector]] = [
        StatusCollector, ResourcesCollector, NodeStatusCollector, ClusterCollector, BackupCollector, SubscriptionCollector,
    ]
    if options.replication:
        enabled.append(ReplicationCollector)
    if options.qdevice:
        enabled.append(QDeviceCollector)
    if options.pressure:
        enabled.append(PressureCollector)
    if options.config:
        enabled.append(GuestConfigCollector)
    return enabled


def cluster_registry(
    result: ScrapeResult, options: CollectorOptions, exclude: tuple[type[ResultCollector], ...] = ()
) -> CollectorRegistry:
    """The PVE metrics of one scrape (what backfill writes), less the `exclude`d collectors."""
    registry = CollectorRegistry(auto_describe=False)
    for concern in concerns(options):
        if concern not in exclude:
            registry.register(concern(result, options))
    return registry


def resources_registry(inventory: Inventory, options: CollectorOptions) -> CollectorRegistry:
    """The families that need /cluster/resources alone: most samples, ready before the rest."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResourcesCollector(ScrapeResult(cluster="", inventory=inventory), options))
    return registry


def rest_registry(result: ScrapeResult, options: CollectorOptions, stats: TargetStats) -> CollectorRegistry:
    """What an HTTP scrape answers besides `resources_registry`: other PVE metrics, self-metrics."""
    registry = cluster_registry(result, options, exclude=(ResourcesCollector,))
    registry.register(SelfCollector(result, stats))
    return registry
