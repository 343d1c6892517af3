"""The balance policy: how load is weighed, when balancing starts, what a move must be worth,
and the limits no plan may cross. Read from the `policy:` block of the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from pveapi import values
from pveapi.errors import ConfigError

GIB = 1024**3


@dataclass(frozen=True)
class Headroom:
    """Memory a node keeps free: the larger of a fraction of its RAM and a byte amount."""

    fraction: float = 0.1
    bytes: int = 0

    def reserved(self, maxmem: int) -> int:
        return max(int(maxmem * self.fraction), self.bytes)


@dataclass(frozen=True)
class Policy:
    # Node load = (cpu_weight * CPU utilisation + memory_weight * memory utilisation) / (sum of weights).
    cpu_weight: float = 0.5
    memory_weight: float = 0.5
    # Balancing moves are planned only when the imbalance (Proxmox CRS definition, 0..1) is above
    # `trigger`, or a node is above a high-water mark; they stop once it is at or below
    # `target_imbalance` (default: half the trigger), so a balanced cluster stays still.
    trigger: float = 0.05
    target_imbalance: float | None = None
    # A balancing move must lower the imbalance, and its source must be busier than its target
    # by at least `min_gain` plus the move's cost, all in load points (0..1): `cost_per_gib`
    # per GiB of memory a live migration copies, `container_restart_cost` for a running
    # container (restart migration means downtime). Nearly even nodes never trade guests.
    min_gain: float = 0.05
    cost_per_gib: float = 0.002
    container_restart_cost: float = 0.05
    # Memory is a hard limit: no node ever goes above RAM minus its headroom, at any step.
    memory_headroom: Headroom = Headroom()
    node_headroom: Mapping[str, Headroom] = field(default_factory=lambda: MappingProxyType({}))
    # Running vCPUs per host CPU thread a move may bring a target to.
    cpu_overcommit: float = 4.0
    # Soft limits: balancing never takes a target above them, and a node above them is relieved
    # even when the imbalance is under the trigger.
    cpu_high_water: float = 0.85
    memory_high_water: float = 0.85
    # Soft rules (node affinity `should`, groups with `strict: false`) are repaired by
    # non-mandatory moves while the imbalance stays within this much of what it was before.
    soft_rule_tolerance: float = 0.01
    # Budgets for balancing and soft-rule moves (mandatory moves are never cut short by them),
    # asked by one gate (planner.budget) for every move. Cost first: bytes the migrations copy
    # (memory of a running guest plus local disks) and their estimated time, per plan and per
    # node (in and out). `max_moves` is a plain cap on the count; `max_moves_per_node` caps the
    # count per node for plain balancing only: relief of a node above a high-water mark is
    # limited by cost alone.
    max_moves: int = 20
    max_moves_per_node: int = 4
    max_copy: int = 512 * GIB
    max_copy_per_node: int = 128 * GIB
    max_migration_seconds: float = 7200.0
    max_migration_seconds_per_node: float = 1800.0
    # Migrations landing on one node at once, in the executor's order.
    max_inflow: int = 1
    # How hard the local search works after greedy: off, quick (the default), thorough.
    search: str = "quick"
    # Estimated migration time = memory / bandwidth (+ restart time for a running container).
    migration_bandwidth: int = 125_000_000  # bytes/s (1 Gbit/s)
    container_restart_seconds: float = 10.0
    # PVE's migrate `bwlimit` (KiB/s) passed on every migration; `node_bwlimit` per node (the
    # smaller of source's and target's wins). None: PVE's own limits (datacenter.cfg) apply.
    bwlimit: int | None = None
    node_bwlimit: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Pressure (PSI, PVE 9): a node's load is multiplied by 1 + pressure_weight x its CPU + memory
    # stall (`some`, fractions of time) over the window, so a node that stalls counts as busier than
    # its utilisation says. 0 (the default) leaves loads as utilisation alone.
    pressure_weight: float = 0.0
    # Guests with local disks or local resources need `with-local-disks` copies; off by default.
    allow_local_disks: bool = False

    @property
    def stop_below(self) -> float:
        return self.trigger / 2 if self.target_imbalance is None else self.target_imbalance

    def headroom_for(self, node: str) -> Headroom:
        return self.node_headroom.get(node, self.memory_headroom)

    def bwlimit_for(self, source: str, target: str) -> int | None:
        """The `bwlimit` (KiB/s) of a migration from `source` to `target`, or None for none."""
        per_node = [self.node_bwlimit[n] for n in (source, target) if n in self.node_bwlimit]
        return min(per_node) if per_node else self.bwlimit

    def estimate_bandwidth(self, source: str, target: str) -> float:
        """Bytes/s a migration time estimate assumes: the bandwidth, capped by the `bwlimit` this
        migration gets (`bwlimit_for`: a per-node limit first)."""
        limit = self.bwlimit_for(source, target)
        return min(self.migration_bandwidth, limit * 1024) if limit else self.migration_bandwidth

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str) -> Policy:
        """Build a policy from the `policy:` block; every key is optional.

        Raises ConfigError naming the key and the expected value on the first bad entry.
        """
        return cls().overridden(data, where)

    def overridden(self, data: Mapping[str, Any] | None, where: str) -> Policy:
        """This policy with the keys of `data` read as the `policy:` block reads them (a what-if
        plan's overrides come through here too, so they are checked the same way). Per-node
        headroom already read is kept as it is: overriding `memory_headroom` alone does not
        change the `node_headroom` entries that inherited from the old one."""
        data = values.mapping(data, where)
        known = {f.name for f in fields(self)}
        values.reject_unknown(data, known, where)
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            at = f"{where}.{key}"
            if key in _FRACTIONS:
                kwargs[key] = values.number(raw, at, 0.0, 1.0)
            elif key in _BOUNDED:
                kwargs[key] = values.number(raw, at, *_BOUNDED[key])
            elif key in ("max_moves", "max_moves_per_node"):
                kwargs[key] = values.count(raw, at, 0, MAX_MOVES)
            elif key == "max_inflow":
                kwargs[key] = values.count(raw, at, 1, MAX_MOVES)
            elif key in ("max_copy", "max_copy_per_node"):
                kwargs[key] = values.size_bytes(raw, at)
            elif key == "search":
                kwargs[key] = values.choice(raw, at, SEARCH_EFFORTS)
            elif key == "target_imbalance":
                kwargs[key] = None if raw is None else values.number(raw, at, 0.0, 1.0)
            elif key == "migration_bandwidth":
                kwargs[key] = values.size_bytes(raw, at, MAX_BANDWIDTH)
                if kwargs[key] <= 0:
                    raise ConfigError(f"{at}: expected a size per second above zero such as 125MB, got {values.found(raw)}")
            elif key == "bwlimit":
                kwargs[key] = None if raw is None else values.count(raw, at, low=1, high=MAX_BWLIMIT)
            elif key == "node_bwlimit":
                per_node = values.mapping(raw, at)
                kwargs[key] = MappingProxyType(
                    {str(n): values.count(v, f"{at}.{n}", low=1, high=MAX_BWLIMIT) for n, v in sorted(per_node.items())}
                )
            elif key == "allow_local_disks":
                kwargs[key] = values.flag(raw, at)
            elif key == "memory_headroom":
                kwargs[key] = _headroom(raw, at, self.memory_headroom)
            elif key == "node_headroom":
                base = kwargs.get("memory_headroom") or _headroom(data.get("memory_headroom"), where, self.memory_headroom)
                per_node = values.mapping(raw, at)
                kwargs[key] = MappingProxyType(
                    {str(n): _headroom(v, f"{at}.{n}", base) for n, v in sorted(per_node.items())}
                )
        policy = replace(self, **kwargs)
        if policy.cpu_weight + policy.memory_weight <= 0:
            raise ConfigError(f"{where}: cpu_weight and memory_weight cannot both be 0")
        if policy.stop_below > policy.trigger:
            if "trigger" in data and "target_imbalance" not in data:  # an override of the trigger alone
                raise ConfigError(f"{where}.trigger: must not be below target_imbalance ({policy.stop_below:g}), "
                                  f"got {policy.trigger:g}")
            raise ConfigError(f"{where}.target_imbalance: must not be above trigger ({policy.trigger:g})")
        return policy


_FRACTIONS = frozenset(
    {"cpu_weight", "memory_weight", "trigger", "min_gain", "cost_per_gib", "container_restart_cost",
     "cpu_high_water", "memory_high_water", "soft_rule_tolerance"}
)
# (low, high): beyond these a value is a typo. No host runs more than 1024 vCPUs per thread,
# a container restart is seconds, not days, and stall weighing a load more than tenfold is a typo.
_BOUNDED = {"cpu_overcommit": (0.01, 1024.0), "container_restart_seconds": (0.0, 86400.0), "pressure_weight": (0.0, 10.0),
            "max_migration_seconds": (0.0, 30 * 86400.0), "max_migration_seconds_per_node": (0.0, 30 * 86400.0)}
MAX_MOVES = 100_000
MAX_BANDWIDTH = 2**40  # 1 TiB/s
MAX_BWLIMIT = 2**30  # KiB/s, as PVE's bwlimit takes it: 1 TiB/s
MAX_HEADROOM = 0.9
SEARCH_EFFORTS = ("off", "quick", "thorough")


def _headroom(raw: Any, where: str, base: Headroom) -> Headroom:
    """`0.1` (fraction), `8GiB` (bytes), or `{fraction: 0.1, bytes: 8GiB}`; unset parts come from `base`."""
    if raw is None:
        return base
    if isinstance(raw, float) or raw == 0:
        return Headroom(fraction=values.number(raw, where, 0.0, MAX_HEADROOM), bytes=0)
    if isinstance(raw, (str, int)) and not isinstance(raw, bool):
        return Headroom(fraction=0.0, bytes=values.size_bytes(raw, where))
    block = values.mapping(raw, where)
    values.reject_unknown(block, {"fraction", "bytes"}, where)
    return Headroom(
        fraction=values.number(block["fraction"], f"{where}.fraction", 0.0, MAX_HEADROOM) if "fraction" in block else base.fraction,
        bytes=values.size_bytes(block["bytes"], f"{where}.bytes") if "bytes" in block else base.bytes,
    )
