"""/cluster/resources entries, built once per cache tick and shared by the endpoints that list them.

Like PVE's status cache, figures refresh every `CACHE_SECONDS` of virtual time, or at once when
placement or state changes; the encoded full answer is cached so `large` is served fast.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from .auth import Caller
from .cluster import GuestState, NodeState, SimCluster
from .figures import guest_figures, node_figures

CACHE_SECONDS = 10
AUDIT_PRIVILEGES = {"node": "Sys.Audit", "qemu": "VM.Audit", "lxc": "VM.Audit", "storage": "Datastore.Audit",
                    "pool": "Pool.Audit"}
TYPE_FILTER = {"vm": ("qemu", "lxc"), "node": ("node",), "storage": ("storage",), "sdn": ()}


def acl_path(entry: dict[str, Any]) -> str:
    kind = entry["type"]
    if kind == "node":
        return f"/nodes/{entry['node']}"
    if kind in ("qemu", "lxc"):
        return f"/vms/{entry['vmid']}"
    if kind == "storage":
        return f"/storage/{entry['storage']}"
    return f"/pool/{entry['pool']}"


def pve_bool(value: bool) -> int:
    return 1 if value else 0


def node_entry(cluster: SimCluster, node: NodeState, t: float, ha_used: bool) -> dict[str, Any]:
    spec = node.spec
    # Figures of the cache tick `t`: a node back online since then stays offline until the next
    # tick, as a real status cache shows it (never `online` without cpu, mem and uptime).
    figures = node_figures(cluster, node, t) if node.online and node.online_at(t) else None
    entry: dict[str, Any] = {"id": f"node/{spec.name}", "type": "node", "node": spec.name,
                             "status": "online" if figures is not None else "offline", "level": ""}
    if figures is not None:
        entry.update({"uptime": int(max(0.0, t - node.boot)), "cpu": figures.cpu, "mem": figures.mem,
                      "disk": spec.rootfs // 4, "cgroup-mode": 2})
    entry.update({"maxcpu": spec.cores, "maxmem": spec.memory, "maxdisk": spec.rootfs})
    if ha_used:
        entry["hastate"] = ("maintenance" if node.maintenance else "online") if node.online else "unknown"
    return entry


def guest_entry(cluster: SimCluster, guest: GuestState, t: float) -> dict[str, Any]:
    spec = guest.spec
    node_online = cluster.nodes[guest.node].online
    figures = guest_figures(cluster, guest, t)
    entry: dict[str, Any] = {
        "id": f"{spec.type}/{spec.vmid}", "type": spec.type, "vmid": spec.vmid, "node": guest.node,
        "name": spec.name, "status": guest.status if node_online else "unknown",
        "template": 1 if spec.template else 0, "uptime": figures.uptime, "cpu": figures.cpu,
        "maxcpu": spec.cpus, "mem": figures.mem, "maxmem": spec.memory,
        "disk": int(spec.disk * 0.4) if spec.type == "lxc" else 0, "maxdisk": spec.disk,
    }
    entry.update(figures.io)
    if spec.type == "qemu" and cluster.nodes[guest.node].spec.major >= 9:
        entry["memhost"] = figures.mem
    if spec.tags:
        entry["tags"] = ";".join(spec.tags)
    if guest.lock:
        entry["lock"] = guest.lock
    if spec.pool:
        entry["pool"] = spec.pool
    if guest.hastate:
        entry["hastate"] = guest.hastate
    return entry


def storage_entries(cluster: SimCluster) -> list[dict[str, Any]]:
    # One pass over the guests: disk used per shared storage, and per (storage, node) otherwise.
    used_by: dict[tuple[str, str | None], int] = {}
    shared = {s.name for s in cluster.scenario.storages if s.shared}
    for g in cluster.guests.values():
        key = (g.spec.storage, None if g.spec.storage in shared else g.node)
        used_by[key] = used_by.get(key, 0) + g.spec.disk
    entries = []
    for storage in cluster.scenario.storages:
        for name, node in cluster.nodes.items():
            if not storage.on(name):
                continue
            used = used_by.get((storage.name, None if storage.shared else name), 0)
            entries.append({
                "id": f"storage/{name}/{storage.name}", "type": "storage", "storage": storage.name, "node": name,
                "plugintype": storage.type, "status": "available" if node.online else "unknown",
                "shared": pve_bool(storage.shared), "content": storage.content,
                "disk": min(used, storage.size), "maxdisk": storage.size,
            })
    return entries


@dataclass
class _Snapshot:
    key: tuple[int, int]
    entries: list[dict[str, Any]]
    encoded: dict[str | None, bytes]


class ResourceCache:
    def __init__(self, cluster: SimCluster) -> None:
        self._cluster = cluster
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def entries(self, now: float) -> _Snapshot:
        cluster = self._cluster
        key = (cluster.version, int(now // CACHE_SECONDS))
        with self._lock:
            if self._snapshot is None or self._snapshot.key != key:
                t = key[1] * CACHE_SECONDS
                with cluster.lock:
                    ha_used = any(g.spec.ha for g in cluster.guests.values())
                    entries = [node_entry(cluster, n, t, ha_used) for n in cluster.nodes.values()]
                    entries += [guest_entry(cluster, g, t) for g in cluster.guests.values()]
                    entries += storage_entries(cluster)
                    entries += [{"id": f"/pool/{p}", "type": "pool", "pool": p} for p in cluster.pools]
                self._snapshot = _Snapshot(key, entries, {})
            return self._snapshot

    def answer(self, now: float, kind: str | None, caller: Caller) -> bytes | list[dict[str, Any]]:
        """Encoded bytes for callers who may audit everything, everywhere (cached); a filtered list
        otherwise (an entry deeper than `/`, e.g. NoAccess on /vms/100, hides what it covers)."""
        snapshot = self.entries(now)
        wanted = TYPE_FILTER.get(kind) if kind else None
        selected = [e for e in snapshot.entries if wanted is None or e["type"] in wanted]
        if caller.uniform() and all(caller.can("/", p) for p in set(AUDIT_PRIVILEGES.values())):
            with self._lock:
                if kind not in snapshot.encoded:
                    snapshot.encoded[kind] = json.dumps({"data": selected}, separators=(",", ":")).encode()
                return snapshot.encoded[kind]
        return [e for e in selected if caller.can(acl_path(e), AUDIT_PRIVILEGES[e["type"]])]
