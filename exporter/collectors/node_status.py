"""Per-node figures only /nodes/{node}/status has: load, iowait, swap, KSM, available memory."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import NODE_STATUS, Call
from .base import ResultCollector
from .families import gauge

CONCERN = NODE_STATUS


@dataclass(frozen=True)
class NodeStatus:
    load1: float
    load5: float
    load15: float
    iowait: float  # fraction
    swap_used: int
    swap_total: int
    ksm_shared: int
    memory_available: int  # PVE 9 `memory.available`, else `memory.free`
    cpus: int
    cpu_model: str  # `cpuinfo.model`: one value per node, so a label of bounded cardinality


def parse_node_status(answer: Any) -> NodeStatus:
    load = [float(value) for value in answer["loadavg"]]  # strings on the wire
    memory: Mapping[str, Any] = answer["memory"]
    swap: Mapping[str, Any] = answer.get("swap") or {}
    return NodeStatus(
        load1=load[0],
        load5=load[1],
        load15=load[2],
        iowait=float(answer.get("wait") or 0.0),
        swap_used=int(swap.get("used") or 0),
        swap_total=int(swap.get("total") or 0),
        ksm_shared=int((answer.get("ksm") or {}).get("shared") or 0),
        memory_available=int(memory["available"] if "available" in memory else memory["free"]),
        cpus=int(answer["cpuinfo"]["cpus"]),
        cpu_model=str(answer["cpuinfo"].get("model") or "unknown"),
    )


class NodeStatusCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return [
            Call(CONCERN, node.name, f"/nodes/{node.name}/status", parse=parse_node_status)
            for node in inventory.online_nodes
        ]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        families = {
            "load1": gauge("pve_node_load1", "1-minute load average"),
            "load5": gauge("pve_node_load5", "5-minute load average"),
            "load15": gauge("pve_node_load15", "15-minute load average"),
            "iowait": gauge("pve_node_iowait_ratio", "Share of CPU time waiting for I/O"),
            "swap_used": gauge("pve_node_swap_usage_bytes", "Used swap in bytes"),
            "swap_total": gauge("pve_node_swap_size_bytes", "Swap size in bytes"),
            "ksm_shared": gauge("pve_node_ksm_shared_bytes", "Memory shared by KSM in bytes"),
            "memory_available": gauge("pve_node_memory_available_bytes", "Available memory in bytes (PVE 9), else free"),
            "cpus": gauge("pve_node_cpu_count", "Host CPU threads"),
        }
        cpu_info = gauge("pve_node_cpu_info", "Host CPU model (1 per node), for CPU compatibility", ["id", "model"])
        for node in inventory.online_nodes:
            status = self._result.answer(CONCERN, node.name)
            if not isinstance(status, NodeStatus):
                continue
            labels = [node.id]
            for field_name, family in families.items():
                family.add_metric(labels, getattr(status, field_name))
            cpu_info.add_metric([node.id, status.cpu_model], 1)
        yield from families.values()
        yield cpu_info
