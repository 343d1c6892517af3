"""A capture of a real cluster as a scenario: `pvesh get /cluster/resources --output-format json`.

Placement, tags, pools, locks and HA state are kept as they are; each guest's current cpu and
mem become constant loads, so the simulated cluster looks like the captured moment; its clock
runs at 60x (`--time-scale` overrides).
"""

from __future__ import annotations

from typing import Any

from pveapi.errors import ConfigError, PvebalanceError
from pveapi.inventory import parse_resources

from .scenario import Scenario, _from_data


def scenario_from_capture(entries: list[Any], where: str, name: str) -> Scenario:
    try:
        inventory = parse_resources(entries)  # the one /cluster/resources parser
    except PvebalanceError as exc:
        raise ConfigError(f"{where}: not a /cluster/resources capture: {exc}") from None
    if not inventory.nodes:
        raise ConfigError(f"{where}: the capture has no node entries; capture with `pvesh get /cluster/resources --output-format json`")
    # /cluster/resources carries no version; PVE 9 adds `memhost` to VMs (--pve-version overrides).
    version = "9.0.10" if any(isinstance(e, dict) and "memhost" in e for e in entries) else "8.4.14"
    nodes = [
        {
            "name": n.name, "version": version,
            "cores": max(1, n.maxcpu),
            "memory": max(n.maxmem, 1),
            "online": n.online,
            "maintenance": n.hastate == "maintenance",
            # The capture has no per-guest split of host overhead: whatever the node used beyond
            # its guests is kept as overhead so node totals match the capture.
            "overhead": {"cpu": 0.0, "memory": 0},
            "rootfs": max(n.maxdisk, 1),
        }
        for n in inventory.nodes
    ]
    storages: dict[str, dict[str, Any]] = {}
    for s in inventory.storages:
        entry = storages.setdefault(s.storage, {"name": s.storage, "type": s.plugintype or "dir", "shared": s.shared,
                                                 "content": ",".join(sorted(s.content)), "size": s.maxdisk, "nodes": []})
        entry["nodes"].append(s.node)
    guests = []
    for g in inventory.guests:
        running = g.running
        guest: dict[str, Any] = {
            "vmid": g.vmid, "type": g.type, "name": g.name, "node": g.node,
            "cpus": max(1, int(g.maxcpu)), "memory": max(g.maxmem, 1), "disk": g.maxdisk,
            "status": g.status if g.status in ("running", "stopped", "paused") else "stopped",
            "template": g.template, "tags": sorted(g.tags), "lock": g.lock, "uptime": g.uptime,
            "cpu": {"profile": "constant", "level": round(g.cpu, 4) if running else 0.0, "noise": 0.0},
            "mem": {"profile": "constant", "level": round(g.mem / g.maxmem, 4) if running and g.maxmem else 0.0, "noise": 0.0},
        }
        if g.pool:
            guest["pool"] = g.pool
        if g.hastate:
            guest["ha"] = {"state": "stopped" if g.hastate == "stopped" else "started"}
        guests.append(guest)
    _add_node_overhead(nodes, inventory)
    pools = sorted(set(inventory.pools) | {g.pool for g in inventory.guests if g.pool})
    return _from_data({
        "name": name,
        # The loads are constant, so a faster clock changes nothing but how long migrations take:
        # rehearsing a plan of many moves takes seconds of real time, not the hours they would.
        "time_scale": 60,
        "nodes": nodes,
        "storages": [{**s, "nodes": s["nodes"] if not s["shared"] else None} for s in storages.values()] or None,
        "pools": [{"id": p} for p in pools],
        "guests": guests,
    }, where)


def _add_node_overhead(nodes: list[dict[str, Any]], inventory: Any) -> None:
    for spec, node in zip(nodes, inventory.nodes, strict=True):
        running = [g for g in inventory.guests if g.node == node.name and g.running]
        guest_cores = sum(g.cpu * g.maxcpu for g in running)
        guest_mem = sum(g.mem for g in running)
        spec["overhead"] = {"cpu": max(0.0, round(node.cpu * node.maxcpu - guest_cores, 3)),
                            "memory": max(0, node.mem - guest_mem)}
