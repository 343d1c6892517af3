"""Cluster, node and version info: /cluster/status and /version, asked once per `INFO_MAX_AGE`.

Names, node ids and versions change rarely, so these two calls are reused across scrapes
instead of adding two calls to every one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory, cluster_id

from ..scrape import Call, ScrapeResult
from .base import ResultCollector
from .families import gauge

INFO_MAX_AGE = 300.0
CONCERN = "cluster"


@dataclass(frozen=True)
class ClusterStatus:
    name: str | None  # None on a standalone node (no cluster entry)
    nodes: int
    quorate: bool
    version: int
    nodeids: Mapping[str, int]


@dataclass(frozen=True)
class Version:
    version: str
    release: str
    repoid: str


def parse_cluster_status(answer: Any) -> ClusterStatus:
    entries = list(answer)
    cluster = next((e for e in entries if e["type"] == "cluster"), None)
    nodeids = {str(e["name"]): int(e.get("nodeid") or 0) for e in entries if e["type"] == "node"}
    if cluster is None:
        return ClusterStatus(None, len(nodeids), True, 0, nodeids)
    return ClusterStatus(
        name=str(cluster["name"]),
        nodes=int(cluster.get("nodes") or len(nodeids)),
        quorate=bool(int(cluster.get("quorate") or 0)),
        version=int(cluster.get("version") or 0),
        nodeids=nodeids,
    )


def parse_version(answer: Any) -> Version:
    return Version(version=str(answer["version"]), release=str(answer.get("release", "")), repoid=str(answer.get("repoid", "")))


def cluster_status(result: ScrapeResult) -> ClusterStatus | None:
    status = result.answer(CONCERN, "status")
    return status if isinstance(status, ClusterStatus) else None


class ClusterCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return (
            Call(CONCERN, "status", "/cluster/status", parse=parse_cluster_status, max_age=INFO_MAX_AGE),
            Call(CONCERN, "version", "/version", parse=parse_version, max_age=INFO_MAX_AGE),
        )

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        status = cluster_status(self._result)
        if status is not None and status.name is not None:
            info = gauge("pve_cluster_info", "Cluster info", ["id", "nodes", "quorate", "version"])
            info.add_metric([cluster_id(status.name), str(status.nodes), str(int(status.quorate)), str(status.version)], 1)
            yield info
        nodeids = status.nodeids if status is not None else {}
        node_info = gauge("pve_node_info", "Node info", ["id", "level", "name", "nodeid"])
        for node in inventory.nodes:
            nodeid = nodeids.get(node.name)
            node_info.add_metric([node.id, node.level, node.name, "" if nodeid is None else str(nodeid)], 1)
        yield node_info
        version = self._result.answer(CONCERN, "version")
        if isinstance(version, Version):
            version_info = gauge("pve_version_info", "Proxmox VE version info", ["release", "repoid", "version"])
            version_info.add_metric([version.release, version.repoid, version.version], 1)
            yield version_info
