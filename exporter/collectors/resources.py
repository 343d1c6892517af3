"""Gauges from the one /cluster/resources answer: nodes, guests and storages.

These are most of a scrape's samples, so they are `FastFamily`s: one escaped `Series` per
node, guest and storage, shared by all its families.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from .base import ResultCollector
from .families import FastFamily, Series

# prometheus-pve-exporter's gauges of the guest counters, deprecated there since 3.8 beside the
# `_total` counters and still read by dashboards (Grafana 10347's Network and Disk IO panels).
DEPRECATED_BYTES = (
    ("netin", "pve_network_receive_bytes", "Bytes the guest received since it started; DEPRECATED: use pve_network_receive_bytes_total"),
    ("netout", "pve_network_transmit_bytes", "Bytes the guest sent since it started; DEPRECATED: use pve_network_transmit_bytes_total"),
    ("diskread", "pve_disk_read_bytes", "Bytes the guest read from its disks since it started; DEPRECATED: use pve_disk_read_bytes_total"),
    ("diskwrite", "pve_disk_write_bytes", "Bytes the guest wrote to its disks since it started; DEPRECATED: use pve_disk_written_bytes_total"),
)


class ResourcesCollector(ResultCollector):
    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        cpu_ratio = FastFamily("pve_cpu_usage_ratio", "CPU use: nodes as a fraction of all host CPUs, guests of their vCPUs")
        cpu_limit = FastFamily("pve_cpu_usage_limit", "Number of CPUs: host threads (nodes), vCPUs (guests)")
        mem_used = FastFamily("pve_memory_usage_bytes", "Used memory in bytes (nodes, guests)")
        mem_size = FastFamily("pve_memory_size_bytes", "Memory size in bytes (nodes, guests)")
        disk_used = FastFamily("pve_disk_usage_bytes", "Used disk space in bytes (nodes, storages, lxc)")
        disk_size = FastFamily("pve_disk_size_bytes", "Disk size in bytes (nodes, storages, guests' root disk)")
        uptime = FastFamily("pve_uptime_seconds", "Uptime of the node or guest in seconds")
        net_in = FastFamily("pve_network_receive_bytes", "Bytes the guest received since it started", "counter")
        net_out = FastFamily("pve_network_transmit_bytes", "Bytes the guest sent since it started", "counter")
        disk_read = FastFamily("pve_disk_read_bytes", "Bytes the guest read from its disks since it started", "counter")
        disk_written = FastFamily("pve_disk_written_bytes", "Bytes the guest wrote to its disks since it started", "counter")
        deprecated = [(field, FastFamily(name, text)) for field, name, text in DEPRECATED_BYTES] if self._options.deprecated else []
        guest_info = FastFamily("pve_guest_info", "Guest info")
        tag_info = FastFamily("pve_guest_tag_info", "One series per guest tag")
        pool_info = FastFamily("pve_guest_pool_info", "The pool of a guest")
        storage_info = FastFamily("pve_storage_info", "Storage info")
        storage_shared = FastFamily("pve_storage_shared", "1 if the storage is shared among the cluster's nodes")
        ha_state = FastFamily("pve_ha_state", "1 for the current HA state of an HA-managed guest or node")
        lock_state = FastFamily("pve_lock_state", "1 for the guest's current config lock")

        for node in inventory.nodes:
            series = Series({"id": node.id})
            cpu_limit.add(series, node.maxcpu)
            mem_size.add(series, node.maxmem)
            disk_size.add(series, node.maxdisk)
            if node.online:  # offline nodes report no usage; 0 would read as idle
                cpu_ratio.add(series, node.cpu)
                mem_used.add(series, node.mem)
                disk_used.add(series, node.disk)
                uptime.add(series, node.uptime)
            if node.hastate:
                ha_state.add(Series({"id": node.id, "state": node.hastate}), 1)

        for guest in inventory.guests:
            guest_id = guest.id
            series = Series({"id": guest_id})
            cpu_ratio.add(series, guest.cpu)
            cpu_limit.add(series, guest.maxcpu)
            mem_used.add(series, guest.mem)
            mem_size.add(series, guest.maxmem)
            if guest.type == "lxc":  # qemu always reports disk 0
                disk_used.add(series, guest.disk)
            disk_size.add(series, guest.maxdisk)
            uptime.add(series, guest.uptime)
            net_in.add(series, guest.netin)
            net_out.add(series, guest.netout)
            disk_read.add(series, guest.diskread)
            disk_written.add(series, guest.diskwrite)
            for field, family in deprecated:
                family.add(series, getattr(guest, field))
            tags = sorted(guest.tags)
            guest_info.add(Series({"id": guest_id, "node": guest.node, "name": guest.name, "type": guest.type,
                                   "template": "1" if guest.template else "0", "tags": ";".join(tags)}), 1)
            for tag in tags:
                tag_info.add(Series({"id": guest_id, "tag": tag}), 1)
            if guest.pool:
                pool_info.add(Series({"id": guest_id, "pool": guest.pool}), 1)
            if guest.hastate:
                ha_state.add(Series({"id": guest_id, "state": guest.hastate}), 1)
            if guest.lock:
                lock_state.add(Series({"id": guest_id, "state": guest.lock}), 1)

        for storage in inventory.storages:
            series = Series({"id": storage.id})
            disk_used.add(series, storage.disk)
            disk_size.add(series, storage.maxdisk)
            storage_shared.add(series, 1 if storage.shared else 0)
            storage_info.add(Series({"id": storage.id, "node": storage.node, "storage": storage.storage,
                                     "content": ",".join(sorted(storage.content)), "plugintype": storage.plugintype}), 1)

        yield from (cpu_ratio, cpu_limit, mem_used, mem_size, disk_used, disk_size, uptime, net_in, net_out, disk_read,
                    disk_written)
        yield from (family for _, family in deprecated)
        yield from (guest_info, tag_info, pool_info, storage_info, storage_shared, ha_state, lock_state)
