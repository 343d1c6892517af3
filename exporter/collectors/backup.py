"""Guests no backup job covers: /cluster/backup-info/not-backed-up, prometheus-pve-exporter's families."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory, cluster_id

from ..scrape import Call
from .base import ResultCollector
from .cluster import cluster_status
from .families import FastFamily, gauge, id_series

CONCERN = "backup"
# Backup jobs change by hand, rarely; a guest created since shows up within this many seconds.
BACKUP_INFO_MAX_AGE = 60.0


def parse_not_backed_up(answer: Any) -> tuple[str, ...]:
    """The `id`s (`qemu/100`) of the guests in the answer."""
    return tuple(f"{str(entry['type'])}/{int(entry['vmid'])}" for entry in answer)


class BackupCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return (Call(CONCERN, "", "/cluster/backup-info/not-backed-up", parse=parse_not_backed_up,
                     max_age=BACKUP_INFO_MAX_AGE),)

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        guests = self._result.answer(CONCERN)
        if inventory is None or not isinstance(guests, tuple):
            return
        status = cluster_status(self._result)
        # A standalone node has no cluster entry; its own name stands for it, as the peer does.
        name = status.name if status is not None and status.name else inventory.nodes[0].name if inventory.nodes else None
        total = gauge("pve_not_backed_up_total", "Number of guests no backup job covers")
        if name is not None:
            total.add_metric([cluster_id(name)], len(guests))
        info = FastFamily("pve_not_backed_up_info", "1 for each guest no backup job covers")  # one per guest
        for guest_id in guests:
            info.add(id_series(guest_id), 1)
        yield total
        yield info
