"""Gauges from the one /cluster/resources answer: nodes, guests and storages.

These are most of a scrape's samples, so they are `FastFamily`s: one escaped `Series` per
node, guest and storage, shared by all its families.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from .base import ResultCollector
from .families import FastFamily, StateFamily, id_series, label_series

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
        # Each family is filled a column at a time: nodes, then guests, then storages, in order.
        nodes, guests, storages = inventory.nodes, inventory.guests, inventory.storages
        online = [node for node in nodes if node.online]  # offline nodes report no usage; 0 would read as idle
        node_ids = [id_series(node.id) for node in nodes]
        online_ids = [id_series(node.id) for node in online]
        guest_ids = [id_series(guest.id) for guest in guests]
        storage_ids = [id_series(storage.id) for storage in storages]
        zeros = self._options.zeros
        # qemu always reports disk 0; prometheus-pve-exporter writes it (`zeros`)
        disk_guests = [(series, guest.disk) for series, guest in zip(guest_ids, guests, strict=True)
                       if zeros or guest.type == "lxc"]

        gauges = {key: FastFamily(name, text) for key, (name, text) in ID_GAUGES.items()}
        for key, family in gauges.items():
            if key in ("cpu", "mem", "uptime", "disk"):
                family.extend(online_ids, [getattr(node, key) for node in online])
            else:
                family.extend(node_ids, [getattr(node, key) for node in nodes])
            if key == "disk":
                family.extend([series for series, _ in disk_guests], [disk for _, disk in disk_guests])
            else:
                family.extend(guest_ids, [getattr(guest, key) for guest in guests])
            if key in ("disk", "maxdisk"):
                family.extend(storage_ids, [getattr(storage, key) for storage in storages])
        yield from gauges.values()

        deprecated = self._options.deprecated
        counters = [FastFamily(name, text, "counter") for _, name, text in GUEST_COUNTERS]
        for (field, _, _), counter in zip(GUEST_COUNTERS, counters, strict=True):
            counter.extend(guest_ids, [getattr(guest, field) for guest in guests])
        yield from counters
        if deprecated:
            yield from (counter.mirror(DEPRECATED_GAUGE.get(name, name), f"{text}; DEPRECATED: use {name}_total")
                        for (_, name, text), counter in zip(GUEST_COUNTERS, counters, strict=True))

        guest_info = FastFamily("pve_guest_info", "Guest info")
        tag_info = FastFamily("pve_guest_tag_info", "One series per guest tag")
        pool_info = FastFamily("pve_guest_pool_info", "The pool of a guest")
        tags = [sorted(guest.tags) for guest in guests]
        guest_info.extend([label_series((("id", guest.id), ("node", guest.node), ("name", guest.name),
                                         ("type", guest.type), ("template", "1" if guest.template else "0"),
                                         ("tags", ";".join(held))))
                           for guest, held in zip(guests, tags, strict=True)], [1] * len(guests))
        tag_series = [label_series((("id", guest.id), ("tag", tag))) for guest, held in zip(guests, tags, strict=True)
                      for tag in held]
        tag_info.extend(tag_series, [1] * len(tag_series))
        pool_series = [label_series((("id", guest.id), ("pool", guest.pool))) for guest in guests if guest.pool]
        pool_info.extend(pool_series, [1] * len(pool_series))
        storage_info = FastFamily("pve_storage_info", "Storage info")
        storage_info.extend([label_series((("id", storage.id), ("node", storage.node), ("storage", storage.storage),
                                           ("content", ",".join(sorted(storage.content))),
                                           ("plugintype", storage.plugintype)))
                             for storage in storages], [1] * len(storages))
        storage_shared = FastFamily("pve_storage_shared", "1 if the storage is shared among the cluster's nodes")
        storage_shared.extend(storage_ids, [1 if storage.shared else 0 for storage in storages])
        yield from (guest_info, tag_info, pool_info, storage_info, storage_shared)

        ha_state = StateFamily("pve_ha_state", "1 for the current HA state of an HA-managed guest or node", zeros)
        ha_state.add_states(node_ids, [node.hastate for node in nodes], NODE_HA_STATES)
        ha_state.add_states(guest_ids, [guest.hastate for guest in guests], GUEST_HA_STATES)
        lock_state = StateFamily("pve_lock_state", "1 for the guest's current config lock", zeros)
        lock_state.add_states(guest_ids, [guest.lock for guest in guests], LOCK_STATES)
        yield from (ha_state, lock_state)
