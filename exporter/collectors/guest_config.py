"""Guest config (onboot): one call per guest, so behind --collector.config (off by default)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import Call
from .base import ResultCollector
from .families import gauge

CONCERN = "config"


def parse_onboot(answer: Any) -> bool:
    return bool(int(answer.get("onboot") or 0))


class GuestConfigCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        online = {node.name for node in inventory.online_nodes}
        return [
            Call(CONCERN, g.id, f"/nodes/{g.node}/{g.type}/{g.vmid}/config", parse=parse_onboot)
            for g in inventory.guests
            if g.node in online
        ]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        onboot = gauge("pve_onboot_status", "1 if the guest starts when its node boots", ["id", "node", "type"])
        for guest in inventory.guests:
            guest_id = guest.id
            value = self._result.answer(CONCERN, guest_id)
            if isinstance(value, bool):
                onboot.add_metric([guest_id, guest.node, guest.type], 1 if value else 0)
        yield onboot
