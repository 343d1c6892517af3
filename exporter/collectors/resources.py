"""Gauges from the one /cluster/resources answer: nodes, guests and storages.

These are most of a scrape's samples, so they are `FastFamily`s: one escaped `Series` per
node, guest and storage, shared by all its families.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from .base import ResultCollector
from .families import FastFamily, Series, StateFamily, id_series

# Families of one series per node, guest or storage, labelled by `id` alone.
ID_GAUGES = {
    "cpu": ("pve_cpu_usage_ratio", "CPU use: nodes as a fraction of all host CPUs, guests of their vCPUs"),
    "maxcpu": ("pve_cpu_usage_limit", "Number of CPUs: host threads (nodes), vCPUs (guests)"),
    "mem": ("pve_memory_usage_bytes", "Used memory in bytes (nodes, guests)"),
    "maxmem": ("pve_memory_size_bytes", "Memory size in bytes (nodes, guests)"),
    "disk": ("pve_disk_usage_bytes", "Used disk space in bytes (nodes, storages, lxc)"),
    "maxdisk": ("pve_disk_size_bytes", "Disk size in bytes (nodes, storages, guests' root disk)"),
    "uptime": ("pve_uptime_seconds", "Uptime of the node or guest in seconds"),
}
# Guest counters: (Guest field, family, what it counts). Each is also exported as
# prometheus-pve-exporter's gauge of the same figure, deprecated there since 3.8 and still read by
# dashboards (Grafana 10347's Network and Disk IO panels).
GUEST_COUNTERS = (
    ("netin", "pve_network_receive_bytes", "Bytes the guest received since it started"),
    ("netout", "pve_network_transmit_bytes", "Bytes the guest sent since it started"),
    ("diskread", "pve_disk_read_bytes", "Bytes the guest read from its disks since it started"),
    ("diskwrite", "pve_disk_written_bytes", "Bytes the guest wrote to its disks since it started"),
)
DEPRECATED_GAUGE = {"pve_disk_written_bytes": "pve_disk_write_bytes"}  # the peer's old name differs
# The states prometheus-pve-exporter writes a 0 or 1 for, every one for every node or guest
# (`CollectorOptions.zeros`, `StateFamily`).
NODE_HA_STATES = ("online", "maintenance", "unknown", "fence", "gone")
GUEST_HA_STATES = ("stopped", "request_stop", "request_start", "request_start_balance", "started", "fence",
                   "recovery", "migrate", "relocate", "freeze", "error")
LOCK_STATES = ("backup", "clone", "create", "migrate", "rollback", "snapshot", "snapshot-delete", "suspended",
               "suspending")


class ResourcesCollector(ResultCollector):
    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        gauges = {key: FastFamily(name, text) for key, (name, text) in ID_GAUGES.items()}
        counters = [(field, FastFamily(name, text, "counter")) for field, name, text in GUEST_COUNTERS]
        deprecated = [
            (field, FastFamily(DEPRECATED_GAUGE.get(name, name), f"{text}; DEPRECATED: use {name}_total"))
            for field, name, text in GUEST_COUNTERS
        ] if self._options.deprecated else []
        cpu_ratio, cpu_limit, mem_used, mem_size, disk_used, disk_size, uptime = gauges.values()
        info = {name: FastFamily(name, text) for name, text in (
            ("pve_guest_info", "Guest info"),
            ("pve_guest_tag_info", "One series per guest tag"),
            ("pve_guest_pool_info", "The pool of a guest"),
            ("pve_storage_info", "Storage info"),
            ("pve_storage_shared", "1 if the storage is shared among the cluster's nodes"),
        )}
        guest_info, tag_info, pool_info, storage_info, storage_shared = info.values()
        zeros = self._options.zeros
        ha_state = StateFamily("pve_ha_state", "1 for the current HA state of an HA-managed guest or node", zeros)
        lock_state = StateFamily("pve_lock_state", "1 for the guest's current config lock", zeros)

        for node in inventory.nodes:
            series = id_series(node.id)
            cpu_limit.add(series, node.maxcpu)
            mem_size.add(series, node.maxmem)
            disk_size.add(series, node.maxdisk)
            if node.online:  # offline nodes report no usage; 0 would read as idle
                cpu_ratio.add(series, node.cpu)
                mem_used.add(series, node.mem)
                disk_used.add(series, node.disk)
                uptime.add(series, node.uptime)
            ha_state.add_state(series, node.hastate, NODE_HA_STATES)

        for guest in inventory.guests:
            guest_id = guest.id
            series = id_series(guest_id)
            cpu_ratio.add(series, guest.cpu)
            cpu_limit.add(series, guest.maxcpu)
            mem_used.add(series, guest.mem)
            mem_size.add(series, guest.maxmem)
            if guest.type == "lxc" or zeros:  # qemu always reports disk 0
                disk_used.add(series, guest.disk)
            disk_size.add(series, guest.maxdisk)
            uptime.add(series, guest.uptime)
            for field, family in counters:
                family.add(series, getattr(guest, field))
            for field, family in deprecated:
                family.add(series, getattr(guest, field))
            tags = sorted(guest.tags)
            guest_info.add(Series({"id": guest_id, "node": guest.node, "name": guest.name, "type": guest.type,
                                   "template": "1" if guest.template else "0", "tags": ";".join(tags)}), 1)
            for tag in tags:
                tag_info.add(Series({"id": guest_id, "tag": tag}), 1)
            if guest.pool:
                pool_info.add(Series({"id": guest_id, "pool": guest.pool}), 1)
            ha_state.add_state(series, guest.hastate, GUEST_HA_STATES)
            lock_state.add_state(series, guest.lock, LOCK_STATES)

        for storage in inventory.storages:
            series = id_series(storage.id)
            disk_used.add(series, storage.disk)
            disk_size.add(series, storage.maxdisk)
            storage_shared.add(series, 1 if storage.shared else 0)
            storage_info.add(Series({"id": storage.id, "node": storage.node, "storage": storage.storage,
                                     "content": ",".join(sorted(storage.content)), "plugintype": storage.plugintype}), 1)

        yield from gauges.values()
        yield from (family for _, family in counters + deprecated)
        yield from info.values()
        yield from (ha_state, lock_state)

