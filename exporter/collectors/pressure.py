"""PSI (PVE 9) from /nodes/{node}/rrddata: one extra call per node, so behind --collector.pressure."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import Call
from .base import ResultCollector
from .families import gauge

CONCERN = "pressure"
# rrddata field -> (resource, kind); PVE 8 nodes have none of them.
FIELDS = {
    "pressurecpusome": ("cpu", "some"),
    "pressureiosome": ("io", "some"),
    "pressureiofull": ("io", "full"),
    "pressurememorysome": ("memory", "some"),
    "pressurememoryfull": ("memory", "full"),
}
PERCENT = 100.0  # rrddata carries PSI avg10 as a percentage


def parse_pressure(answer: Any) -> Mapping[tuple[str, str], float]:
    """The newest row's PSI fields, as ratios (rows omit undefined values)."""
    for row in reversed(list(answer)):
        found = {FIELDS[key]: float(value) / PERCENT for key, value in row.items() if key in FIELDS}
        if found:
            return found
    return {}


class PressureCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return [
            Call(CONCERN, node.name, f"/nodes/{node.name}/rrddata", {"timeframe": "hour", "cf": "AVERAGE"}, parse_pressure)
            for node in inventory.online_nodes
        ]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        pressure = gauge("pve_node_pressure_ratio", "Pressure stall information (PSI avg10), PVE 9", ["id", "resource", "kind"])
        for node in inventory.online_nodes:
            values = self._result.answer(CONCERN, node.name) or {}
            for (resource, kind), value in sorted(values.items()):
                pressure.add_metric([node.id, resource, kind], value)
        yield pressure
