"""PSI (PVE 9), behind --collector.pressure: each node's from /nodes/{node}/rrddata (one call per
node) and each running guest's own from its node's /nodes/{node}/{qemu|lxc} list (one call per
node and guest type it runs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import Call
from .base import ResultCollector
from .families import FastFamily, label_series

CONCERN = "pressure"
GUEST_CONCERN = "guest_pressure"
# API field -> (resource, kind); PVE 8 has none of them, and only VMs report CPU `full`.
FIELDS = {
    "pressurecpusome": ("cpu", "some"),
    "pressurecpufull": ("cpu", "full"),
    "pressureiosome": ("io", "some"),
    "pressureiofull": ("io", "full"),
    "pressurememorysome": ("memory", "some"),
    "pressurememoryfull": ("memory", "full"),
}
PERCENT = 100.0  # PVE carries PSI avg10 as a percentage
Figures = Mapping[tuple[str, str], float]


def _ratios(row: Mapping[str, Any]) -> Figures:
    return {FIELDS[key]: float(value) / PERCENT for key, value in row.items() if key in FIELDS}


def parse_pressure(answer: Any) -> Figures:
    """The newest rrddata row's PSI fields, as ratios (rows omit undefined values)."""
    for row in reversed(list(answer)):
        found = _ratios(row)
        if found:
            return found
    return {}


def parse_guest_pressure(answer: Any) -> Mapping[int, Figures]:
    """vmid -> PSI ratios, from a guest list (entries without PSI are left out)."""
    found = {int(entry["vmid"]): _ratios(entry) for entry in answer}
    return {vmid: figures for vmid, figures in found.items() if figures}


class PressureCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        online = {node.name for node in inventory.online_nodes}
        lists = sorted({(g.node, g.type) for g in inventory.guests if g.running and g.node in online})
        return [
            *(Call(CONCERN, node.name, f"/nodes/{node.name}/rrddata", {"timeframe": "hour", "cf": "AVERAGE"},
                   parse_pressure) for node in inventory.online_nodes),
            *(Call(GUEST_CONCERN, f"{node}/{kind}", f"/nodes/{node}/{kind}", parse=parse_guest_pressure)
              for node, kind in lists),
        ]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        pressure = FastFamily("pve_node_pressure_ratio", "Pressure stall information (PSI avg10), PVE 9")
        for node in inventory.online_nodes:
            self._add(pressure, node.id, self._result.answer(CONCERN, node.name))
        yield pressure
        # Five or six series per running guest: the fast encoder's, as the /cluster/resources families.
        guests = FastFamily("pve_guest_pressure_ratio",
                            "A running guest's own pressure stall (PSI avg10, its cgroup), PVE 9")
        lists: dict[tuple[str, str], Mapping[int, Figures]] = {}
        for guest in inventory.guests:
            key = (guest.node, guest.type)
            listed = lists.get(key)
            if listed is None:
                listed = lists[key] = self._result.answer(GUEST_CONCERN, f"{guest.node}/{guest.type}") or {}
            self._add(guests, guest.id, listed.get(guest.vmid))
        yield guests

    @staticmethod
    def _add(family: FastFamily, resource_id: str, figures: Figures | None) -> None:
        for (resource, kind), value in sorted((figures or {}).items()):
            family.add(label_series((("id", resource_id), ("kind", kind), ("resource", resource))), value)
