"""The cluster as /cluster/resources describes it: the one Node, Guest and Storage types.

The exporter turns these into gauges; the controller plans on them. Usage figures here are
the live ones the API reports; the controller may replace them with history from Prometheus.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from . import values
from .errors import ApiError, ConfigError, ErrorKind
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
    cpu_flags: frozenset[str] | None = None  # node status `cpuinfo.flags`, when read (controller/compat.py)
    # Free bytes (maxdisk - disk) of each available storage that is not shared: where a guest
    # moved with local disks gets copies of them.
    local_free: tuple[tuple[str, int], ...] = ()

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
    disk_bytes: tuple[tuple[str, int], ...] = ()  # bytes of its disks per storage (guest config `size=`)

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
_REFUSE = "refusing to plan on an answer that cannot be true"

# The largest figure each field can hold; anything above (or negative, NaN, infinite) is not a
# reading of a real cluster, and acting on it could overcommit a node.
MAX_THREADS = 65536
MAX_CPU_RATIO = 64.0  # a sample overshoots 1 a little; a guest's vCPUs past its cap, not 64 times
MAX_COUNTER = 2**63  # bytes moved, seconds up


def parse_resources(entries: Any) -> Inventory:
    """Parse the answer of GET /cluster/resources (the bare list).

    Every figure is checked (whole, finite, within what a real cluster can report; see
    MAX_*): raises ApiError(BAD_ANSWER) naming the first entry that is not the documented
    shape. `check_consistent` checks the entries against each other.
    """
    if not isinstance(entries, list):
        raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"expected a list, got {type(entries).__name__}")
    nodes: list[Node] = []
    guests: list[Guest] = []
    storages: list[Storage] = []
    pools: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"entry {index} is not an object; {_REFUSE}")
        kind = entry.get("type")
        try:
            if kind == "node":
                nodes.append(_node(_Fields(entry, "node", index)))
            elif kind in ("qemu", "lxc"):
                guests.append(_guest(_Fields(entry, "guest", index)))
            elif kind == "storage":
                storages.append(_storage(_Fields(entry, "storage", index)))
            elif kind == "pool":
                pools.append(_Fields(entry, "pool", index).name("pool"))
        except ConfigError as exc:
            raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"{exc}; {_REFUSE}") from None
    available: dict[str, set[str]] = {}
    local_free: dict[str, list[tuple[str, int]]] = {}
    for s in storages:
        if s.status == "available":
            available.setdefault(s.node, set()).add(s.storage)
            if not s.shared:
                local_free.setdefault(s.node, []).append((s.storage, max(0, s.maxdisk - s.disk)))
    nodes = [replace(n, storages=frozenset(available.get(n.name, ())), local_free=tuple(sorted(local_free.get(n.name, ()))))
             for n in nodes]
    return Inventory(
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        guests=tuple(sorted(guests, key=lambda g: g.vmid)),
        storages=tuple(storages),
        pools=tuple(sorted(pools)),
    )


def check_consistent(inventory: Inventory) -> Inventory:
    """The inventory, if its entries agree with each other: each node and each VMID listed once,
    every guest on a listed node. Raises ApiError(BAD_ANSWER) naming the first guest that is not.

    The controller plans only on a consistent inventory (`PveClient.resources`); the exporter
    may export one that is not.
    """
    listed = Counter(n.name for n in inventory.nodes)
    names = set(listed)
    twice = sorted(n for n, times in listed.items() if times > 1)
    if twice:
        raise ApiError(ErrorKind.BAD_ANSWER, ENDPOINT, f"node {twice[0]} is listed twice; {_REFUSE}")
    where: dict[int, str] = {}
    for guest in inventory.guests:
        if guest.vmid in where:
            raise ApiError(
                ErrorKind.BAD_ANSWER, ENDPOINT,
                f"guest {guest.vmid} is listed on both {where[guest.vmid]} and {guest.node}; {_REFUSE}",
            )
        where[guest.vmid] = guest.node
        if guest.node not in names:
            raise ApiError(
                ErrorKind.BAD_ANSWER, ENDPOINT,
                f"guest {guest.vmid} ({guest.name}) is on node {guest.node}, which is not in the node list "
                f"(does the token lack Sys.Audit on /nodes?); {_REFUSE}",
            )
    return inventory


_T = TypeVar("_T")


class _Fields:
    """One /cluster/resources entry, read field by field through pveapi.values.

    The API leaves figures out for offline nodes and stopped guests (0 then); numbers may come
    as text (PVE's JSON is not always typed).
    """

    def __init__(self, entry: Mapping[str, Any], kind: str, index: int) -> None:
        self.entry, self._kind, self._index = entry, kind, index

    @property
    def label(self) -> str:
        """`guest 'qemu/100'`: built only for an error (this runs for every field of a big cluster)."""
        return f"{self._kind} {values.found(self.entry.get('id', f'#{self._index}'))}"

    def read(self, reader: Callable[..., _T], key: str, value: Any, *bounds: Any) -> _T:
        """`reader(value, where, *bounds)` (a pveapi.values reader), the entry named in its error
        only when there is one: the label costs more than the check on a big cluster."""
        try:
            return reader(value, key, *bounds)
        except ConfigError:
            return reader(value, f"{self.label}.{key}", *bounds)

    def _raw(self, key: str) -> Any:
        value = self.entry.get(key)
        if isinstance(value, str):
            try:
                return float(value) if value.strip() else None
            except ValueError:
                return value
        return value

    def whole(self, key: str, high: float = values.MAX_BYTES) -> int:
        value = self.entry.get(key)
        if type(value) is int and 0 <= value <= high:  # the usual answer: exact, and no label to build
            return value
        value = self._raw(key)
        return 0 if value is None else self.read(values.count, key, value, 0, int(high))

    def number(self, key: str, high: float = MAX_CPU_RATIO) -> float:
        value = self.entry.get(key)
        if (type(value) is float or type(value) is int) and 0.0 <= value <= high:  # NaN and inf fail this
            return float(value)
        value = self._raw(key)
        return 0.0 if value is None else self.read(values.number, key, value, 0.0, high)

    def name(self, key: str) -> str:
        return self.read(values.name, key, self.entry.get(key))

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.entry.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise ConfigError(f"{self.label}.{key}: expected text, got {values.found(value)}")
        return value

    def flag(self, key: str) -> bool:
        value = self.entry.get(key)
        if value is None or value == "":
            return False
        return self.read(values.flag, key, int(value) if value in ("0", "1") else value)


def _node(f: _Fields) -> Node:
    return Node(
        name=f.name("node"),
        online=f.text("status") == "online",
        cpu=f.number("cpu"),
        level=f.text("level", "") or "",
        hastate=f.text("hastate"),
        maxcpu=f.whole("maxcpu", MAX_THREADS),
        maxmem=f.whole("maxmem"),
        mem=f.whole("mem"),
        disk=f.whole("disk"),
        maxdisk=f.whole("maxdisk"),
        uptime=f.whole("uptime", MAX_COUNTER),
    )


def _guest(f: _Fields) -> Guest:
    vmid = f.read(values.vmid, "vmid", f.entry.get("vmid"))
    kind = f.entry["type"]
    return Guest(
        vmid=vmid,
        type=kind,
        name=f.text("name") or f"{kind}{vmid}",
        node=f.name("node"),
        status=f.text("status", "unknown") or "unknown",
        maxcpu=f.number("maxcpu", MAX_THREADS),
        cpu=f.number("cpu"),
        template=f.flag("template"),
        tags=parse_tags(f.text("tags")),
        pool=f.text("pool"),
        lock=f.text("lock"),
        hastate=f.text("hastate"),
        maxmem=f.whole("maxmem"),
        mem=f.whole("mem"),
        disk=f.whole("disk"),
        maxdisk=f.whole("maxdisk"),
        uptime=f.whole("uptime", MAX_COUNTER),
        netin=f.whole("netin", MAX_COUNTER),
        netout=f.whole("netout", MAX_COUNTER),
        diskread=f.whole("diskread", MAX_COUNTER),
        diskwrite=f.whole("diskwrite", MAX_COUNTER),
    )


def _storage(f: _Fields) -> Storage:
    return Storage(
        storage=f.name("storage"),
        node=f.name("node"),
        plugintype=f.text("plugintype", "") or "",
        status=f.text("status", "unknown") or "unknown",
        shared=f.flag("shared"),
        content=frozenset(c for c in (f.text("content", "") or "").split(",") if c),
        disk=f.whole("disk"),
        maxdisk=f.whole("maxdisk"),
    )


def guests_by_node(guests: Iterable[Guest]) -> dict[str, list[Guest]]:
    by_node: dict[str, list[Guest]] = {}
    for guest in guests:
        by_node.setdefault(guest.node, []).append(guest)
    return by_node
