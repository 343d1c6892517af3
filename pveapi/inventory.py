"""The cluster as /cluster/resources describes it: the one Node, Guest and Storage types.

The exporter turns these into gauges; the controller plans on them. Usage figures here are
the live ones the API reports; the controller may replace them with history from Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import ApiError, ErrorKind
from .tags import parse_tags

GuestType = Literal["qemu", "lxc"]

# PVE HA names guests by service id: `vm:100` for a qemu guest, `ct:101` for a container.
HA_SID_PREFIX: dict[str, str] = {"qemu": "vm", "lxc": "ct"}


# The qemu CPU type that passes the host's own CPU through (see Guest.cputype).
HOST_CPU = "host"


def ha_sid(guest_type: str, vmid: int) -> str:
    return f"{HA_SID_PREFIX[guest_type]}:{vmid}"


@dataclass(frozen=True)
class Node:
    name: str
    online: bool
    maxcpu: int  # host CPU threads
    maxmem: int  # bytes
    cpu: float = 0.0  # fraction of all host CPUs, 0..1
    mem: int = 0  # bytes used
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0
    level: str = ""
    hastate: str | None = None  # "online", "maintenance", ... when HA reports on the node
    storages: frozenset[str] = frozenset()  # storages available on the node (its /cluster/resources entries)
    cpu_model: str | None = None  # node status `cpuinfo.model`, when read (controller/compat.py)

    @property
    def cpu_cores_used(self) -> float:
        return self.cpu * self.maxcpu

    @property
    def id(self) -> str:
        """The /cluster/resources id (`node/pve1`): the `id` label of every per-node series."""
        return f"node/{self.name}"


@dataclass(frozen=True)
class Guest:
    vmid: int
    type: GuestType
    name: str
    node: str
    status: str  # running, stopped, paused, ...
    maxcpu: float  # vCPUs
    maxmem: int  # bytes
    cpu: float = 0.0  # fraction of the guest's own vCPUs
    mem: int = 0
    disk: int = 0
    maxdisk: int = 0
    uptime: int = 0
    netin: int = 0
    netout: int = 0
    diskread: int = 0
    diskwrite: int = 0
    template: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)
    pool: str | None = None
    lock: str | None = None
    hastate: str | None = None  # set when the guest is an HA resource
    # From the guest config, when read (controller/compat.py); None: not known, not checked.
    cputype: str | None = None
    disk_storages: frozenset[str] | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def ha_managed(self) -> bool:
        return self.hastate is not None

    @property
    def cpu_cores_used(self) -> float:
        return self.cpu * self.maxcpu

    @property
    def id(self) -> str:
        """The /cluster/resources id (`qemu/100`): the `id` label of every per-guest series."""
        return f"{self.type}/{self.vmid}"

    @property
    def sid(self) -> str:
        """The HA service id, e.g. `vm:100` or `ct:101`."""
        return ha_sid(self.type, self.vmid)


@dataclass(frozen=True)
class Storage:
    storage: str
    node: str
    plugintype: str
    status: str
    shared: bool
    content: frozenset[str]
    disk: int = 0
    maxdisk: int = 0

    @property
    def id(self) -> str:
        """The /cluster/resources id (`storage/pve1/local-lvm`)."""
        return f"storage/{self.node}/{self.storage}"


def cluster_id(name: str) -> str:
    """The id prometheus-pve-exporter gives the cluster (`cluster/pvec`)."""
    return f"cluster/{name}"


@dataclass(frozen=True)
class Inventory:
    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    storages: tuple[Storage, ...] = ()
    pools: tuple[str, ...] = ()

    def node(self, name: str) -> Node | None:
        return next((n for n in self.nodes if n.name == name), None)

    def guest(self, vmid: int) -> Guest | None:
        return next((g for g in self.guests if g.vmid == vmid), None)

    @property
    def online_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.online)


ENDPOINT = "/cluster/resources"


def parse_resources(entries: Any) -> Inventory:
    """Parse the answer of GET /cluster/resources (the bare list).

    Raises ApiError(BAD_ANSWER) naming the first entry that is not the documented shape.
    """
    if not isinstance(entries, list):
        raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"expected a list, got {type(entries).__name__}")
    nodes: list[Node] = []
    guests: list[Guest] = []
    storages: list[Storage] = []
    pools: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"entry {index} is not an object")
        kind = entry.get("type")
        try:
            if kind == "node":
                nodes.append(_node(entry))
            elif kind in ("qemu", "lxc"):
                guests.append(_guest(entry))
            elif kind == "storage":
                storages.append(_storage(entry))
            elif kind == "pool":
                pools.append(str(entry["pool"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(
                ErrorKind.BAD_ANSWER, ENDPOINT, f"entry {entry.get('id', index)!r} is malformed: {exc!r}"
            ) from None
    available: dict[str, set[str]] = {}
    for s in storages:
        if s.status == "available":
            available.setdefault(s.node, set()).add(s.storage)
    nodes = [replace(n, storages=frozenset(available.get(n.name, ()))) for n in nodes]
    return Inventory(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        guests=tuple(sorted(guests, key=lambda g: g.vmid)),
        storages=tuple(storages),
        pools=tuple(sorted(pools)),
    )


def _whole_numbers(e: Mapping[str, Any], *keys: str) -> dict[str, int]:
    """Byte, second and counter fields; the API leaves them out for offline nodes and stopped guests."""
    return {key: int(e.get(key) or 0) for key in keys}


def _node(e: Mapping[str, Any]) -> Node:
    return Node(
        name=str(e["node"]),
        online=e.get("status") == "online",
        cpu=float(e.get("cpu") or 0.0),
        level=str(e.get("level") or ""),
        hastate=e.get("hastate"),
        **_whole_numbers(e, "maxcpu", "maxmem", "mem", "disk", "maxdisk", "uptime"),
    )


def _guest(e: Mapping[str, Any]) -> Guest:
    return Guest(
        vmid=int(e["vmid"]),
        type=e["type"],
        name=str(e.get("name") or f"{e['type']}{e['vmid']}"),
        node=str(e["node"]),
        status=str(e.get("status") or "unknown"),
        maxcpu=float(e.get("maxcpu") or 0),
        cpu=float(e.get("cpu") or 0.0),
        template=bool(int(e.get("template") or 0)),
        tags=parse_tags(e.get("tags")),
        pool=e.get("pool"),
        lock=e.get("lock") or None,
        hastate=e.get("hastate"),
        **_whole_numbers(
            e, "maxmem", "mem", "disk", "maxdisk", "uptime", "netin", "netout", "diskread", "diskwrite"
        ),
    )


def _storage(e: Mapping[str, Any]) -> Storage:
    return Storage(
        storage=str(e["storage"]),
        node=str(e["node"]),
        plugintype=str(e.get("plugintype") or ""),
        status=str(e.get("status") or "unknown"),
        shared=bool(int(e.get("shared") or 0)),
        content=frozenset(c for c in str(e.get("content") or "").split(",") if c),
        **_whole_numbers(e, "disk", "maxdisk"),
    )


def guests_by_node(guests: Iterable[Guest]) -> dict[str, list[Guest]]:
    by_node: dict[str, list[Guest]] = {}
    for guest in guests:
        by_node.setdefault(guest.node, []).append(guest)
    return by_node
