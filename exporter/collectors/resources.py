"""Gauges from the one /cluster/resources answer: nodes, guests and storages."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from .base import ResultCollector
from .families import add, add_total, counter, gauge


class ResourcesCollector(ResultCollector):
    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        cpu_ratio = gauge("pve_cpu_usage_ratio", "CPU use: nodes as a fraction of all host CPUs, guests of their vCPUs")
        cpu_limit = gauge("pve_cpu_usage_limit", "Number of CPUs: host threads (nodes), vCPUs (guests)")
        mem_used = gauge("pve_memory_usage_bytes", "Used memory in bytes (nodes, guests)")
        mem_size = gauge("pve_memory_size_bytes", "Memory size in bytes (nodes, guests)")
        disk_used = gauge("pve_disk_usage_bytes", "Used disk space in bytes (nodes, storages, lxc)")
        disk_size = gauge("pve_disk_size_bytes", "Disk size in bytes (nodes, storages, guests' root disk)")
        uptime = gauge("pve_uptime_seconds", "Uptime of the node or guest in seconds")
        net_in = counter("pve_network_receive_bytes", "Bytes the guest received since it started")
        net_out = counter("pve_network_transmit_bytes", "Bytes the guest sent since it started")
        disk_read = counter("pve_disk_read_bytes", "Bytes the guest read from its disks since it started")
        disk_written = counter("pve_disk_written_bytes", "Bytes the guest wrote to its disks since it started")
        guest_info = gauge("pve_guest_info", "Guest info", ["id", "node", "name", "type", "template", "tags"])
        tag_info = gauge("pve_guest_tag_info", "One series per guest tag", ["id", "tag"])
        pool_info = gauge("pve_guest_pool_info", "The pool of a guest", ["id", "pool"])
        storage_info = gauge("pve_storage_info", "Storage info", ["id", "node", "storage", "content", "plugintype"])
        ha_state = gauge("pve_ha_state", "1 for the current HA state of an HA-managed guest or node", ["id", "state"])
        lock_state = gauge("pve_lock_state", "1 for the guest's current config lock", ["id", "state"])

        for node in inventory.nodes:
            labels = {"id": node.id}
            add(cpu_limit, labels, node.maxcpu)
            add(mem_size, labels, node.maxmem)
            add(disk_size, labels, node.maxdisk)
            if node.online:  # offline nodes report no usage; 0 would read as idle
                add(cpu_ratio, labels, node.cpu)
                add(mem_used, labels, node.mem)
                add(disk_used, labels, node.disk)
                add(uptime, labels, node.uptime)
            if node.hastate:
                add(ha_state, {"id": labels["id"], "state": node.hastate}, 1)

        for guest in inventory.guests:
            guest_id = guest.id
            labels = {"id": guest_id}
            add(cpu_ratio, labels, guest.cpu)
            add(cpu_limit, labels, guest.maxcpu)
            add(mem_used, labels, guest.mem)
            add(mem_size, labels, guest.maxmem)
            if guest.type == "lxc":  # qemu always reports disk 0
                add(disk_used, labels, guest.disk)
            add(disk_size, labels, guest.maxdisk)
            add(uptime, labels, guest.uptime)
            add_total(net_in, labels, guest.netin)
            add_total(net_out, labels, guest.netout)
            add_total(disk_read, labels, guest.diskread)
            add_total(disk_written, labels, guest.diskwrite)
            tags = sorted(guest.tags)
            guest_info.add_metric(
                [guest_id, guest.node, guest.name, guest.type, "1" if guest.template else "0", ";".join(tags)], 1
            )
            for tag in tags:
                add(tag_info, {"id": guest_id, "tag": tag}, 1)
            if guest.pool:
                add(pool_info, {"id": guest_id, "pool": guest.pool}, 1)
            if guest.hastate:
                add(ha_state, {"id": guest_id, "state": guest.hastate}, 1)
            if guest.lock:
                add(lock_state, {"id": guest_id, "state": guest.lock}, 1)

        for storage in inventory.storages:
            storage_id = storage.id
            labels = {"id": storage_id}
            add(disk_used, labels, storage.disk)
            add(disk_size, labels, storage.maxdisk)
            storage_info.add_metric(
                [storage_id, storage.node, storage.storage, ",".join(sorted(storage.content)), storage.plugintype], 1
            )

        yield from (
            cpu_ratio, cpu_limit, mem_used, mem_size, disk_used, disk_size, uptime, net_in, net_out, disk_read,
            disk_written, guest_info, tag_info, pool_info, storage_info, ha_state, lock_state,
        )
