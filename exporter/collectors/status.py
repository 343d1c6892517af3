"""pve_up for the cluster, every node, guest and storage."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from pveapi.inventory import cluster_id

from .base import ResultCollector
from .cluster import cluster_status
from .families import FastFamily, id_series
from .node_status import CONCERN as NODE_STATUS


class StatusCollector(ResultCollector):
    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        up = FastFamily(
            "pve_up",
            "1 if the node is online and answered its status call, the guest running, the storage "
            "available, the cluster quorate",
        )
        status = cluster_status(self._result)
        if status is not None and status.name is not None:
            up.add(id_series(cluster_id(status.name)), 1 if status.quorate else 0)
        nodes, guests, storages = inventory.nodes, inventory.guests, inventory.storages
        up.extend([id_series(node.id) for node in nodes],
                  [1 if node.online and not self._result.failed(NODE_STATUS, node.name) else 0 for node in nodes])
        up.extend([id_series(guest.id) for guest in guests], [1 if guest.running else 0 for guest in guests])
        up.extend([id_series(storage.id) for storage in storages],
                  [1 if storage.status == "available" else 0 for storage in storages])
        yield up
