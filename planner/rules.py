"""Placement rules: one type per concept, from three sources merged into one RuleSet.

- the `rules:` block of the config (`load_rules`),
- PVE 9 HA rules from /cluster/ha/rules (`ha_rules`),
- guest tags, in the forms ProxLB and ProxBalance users already have (`tag_rules`).

Rules name guests by VMID and/or pool (`GuestSelector`); `Constraints.members` resolves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pveapi import values
from pveapi.errors import ConfigError
from pveapi.inventory import HA_SID_PREFIX, Guest
from pveapi.tags import tags_with_prefix

IGNORE_TAG = "ignore"  # ProxBalance
IGNORE_PREFIX = "plb_ignore"  # ProxLB: any tag starting with it (plb_ignore, plb_ignore_backup, ...)
ANTI_AFFINITY_PREFIXES = ("exclude_", "plb_anti_affinity_")  # ProxBalance, ProxLB
AFFINITY_PREFIXES = ("plb_affinity_",)
PIN_PREFIXES = ("plb_pin_",)
MAX_PRIORITY = 1_000_000  # node-affinity priorities; PVE HA's are small whole numbers
MAX_RESERVED_CORES = 65536.0


@dataclass(frozen=True)
class GuestSelector:
    vmids: frozenset[int] = frozenset()
    pools: frozenset[str] = frozenset()


@dataclass(frozen=True)
class IgnoreRule:
    """Guests the balancer never moves (they still count for load)."""

    selector: GuestSelector
    source: str


@dataclass(frozen=True)
class AntiAffinityRule:
    """Members run on pairwise different nodes."""

    name: str
    selector: GuestSelector
    source: str
    strict: bool = True


@dataclass(frozen=True)
class AffinityRule:
    """Members run together on one node."""

    name: str
    selector: GuestSelector
    source: str
    strict: bool = True


@dataclass(frozen=True)
class NodeAffinityRule:
    """Members run on the listed nodes (`strict`: must, else should).

    Like PVE HA, only the highest-priority group of listed nodes that is available counts;
    `negative` turns the list into nodes the members must (or should) avoid.
    """

    name: str
    selector: GuestSelector
    nodes: tuple[tuple[str, int], ...]  # (node, priority), higher first wins
    source: str
    strict: bool = True
    negative: bool = False


@dataclass(frozen=True)
class MaintenanceRule:
    """Nodes to evacuate and not to place guests on."""

    nodes: frozenset[str]
    source: str


@dataclass(frozen=True)
class ClosedRule:
    """Nodes that may not receive guests; unlike maintenance, what runs there stays (a what-if)."""

    nodes: frozenset[str]
    source: str


@dataclass(frozen=True)
class ReservationRule:
    """CPU and memory on a node kept free of guests (host services, failover room)."""

    node: str
    cpu_cores: float
    mem_bytes: int
    source: str


@dataclass(frozen=True)
class RuleSet:
    ignore: tuple[IgnoreRule, ...] = ()
    anti_affinity: tuple[AntiAffinityRule, ...] = ()
    affinity: tuple[AffinityRule, ...] = ()
    node_affinity: tuple[NodeAffinityRule, ...] = ()
    maintenance: tuple[MaintenanceRule, ...] = ()
    reservations: tuple[ReservationRule, ...] = field(default=())
    closed: tuple[ClosedRule, ...] = ()

    def merge(self, other: RuleSet) -> RuleSet:
        return RuleSet(
            ignore=self.ignore + other.ignore,
            anti_affinity=self.anti_affinity + other.anti_affinity,
            affinity=self.affinity + other.affinity,
            node_affinity=self.node_affinity + other.node_affinity,
            maintenance=self.maintenance + other.maintenance,
            reservations=self.reservations + other.reservations,
            closed=self.closed + other.closed,
        )


def missing_guests(rules: RuleSet, vmids: Iterable[int]) -> list[str]:
    """One line per rule that names a VMID the cluster does not have (a typo, or a guest gone)."""
    present = set(vmids)
    named: list[tuple[str, GuestSelector]] = [(f"ignore ({r.source})", r.selector) for r in rules.ignore]
    named += [(f"anti-affinity '{r.name}' ({r.source})", r.selector) for r in rules.anti_affinity]
    named += [(f"affinity '{r.name}' ({r.source})", r.selector) for r in rules.affinity]
    named += [(f"node affinity '{r.name}' ({r.source})", r.selector) for r in rules.node_affinity]
    lines = []
    for label, selector in named:
        missing = sorted(selector.vmids - present)
        if missing:
            lines.append(f"{label} names guest(s) {', '.join(map(str, missing))}, not in the cluster: check the rule")
    return lines


# --- the `rules:` block ---------------------------------------------------------------------

_Group = TypeVar("_Group", AntiAffinityRule, AffinityRule)
_SECTIONS = frozenset({"ignore", "anti_affinity", "affinity", "node_affinity", "maintenance", "reservations"})


def load_rules(data: Mapping[str, Any] | None, where: str) -> RuleSet:
    """Parse the `rules:` config block (see docs/rules.md). Raises ConfigError on the first bad entry."""
    data = values.mapping(data, where)
    values.reject_unknown(data, _SECTIONS, where)
    source = f"config {where}"
    return RuleSet(
        ignore=tuple(
            IgnoreRule(_selector(e, f"{where}.ignore[{i}]", short_form=True), source)
            for i, e in enumerate(_entries(data, "ignore", where))
        ),
        anti_affinity=tuple(
            _group(AntiAffinityRule, e, f"{where}.anti_affinity[{i}]", source)
            for i, e in enumerate(_entries(data, "anti_affinity", where))
        ),
        affinity=tuple(
            _group(AffinityRule, e, f"{where}.affinity[{i}]", source)
            for i, e in enumerate(_entries(data, "affinity", where))
        ),
        node_affinity=tuple(
            _node_affinity(e, f"{where}.node_affinity[{i}]", source)
            for i, e in enumerate(_entries(data, "node_affinity", where))
        ),
        maintenance=(MaintenanceRule(frozenset(values.name_list(data["maintenance"], f"{where}.maintenance")), source),)
        if data.get("maintenance")
        else (),
        reservations=tuple(
            _reservation(node, spec, f"{where}.reservations.{node}", source)
            for node, spec in sorted(
                values.mapping(data.get("reservations"), f"{where}.reservations").items(), key=lambda item: str(item[0])
            )
        ),
    )


def _entries(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}.{key}: expected a list of entries, got {type(entries).__name__}")
    return entries


def _selector(entry: Any, where: str, short_form: bool = False) -> GuestSelector:
    if short_form and isinstance(entry, (int, str)) and not isinstance(entry, bool):
        return GuestSelector(vmids=frozenset(values.vmid_list(entry, where)))
    block = values.mapping(entry, where)
    vmids = values.vmid_list(block["vmids"], f"{where}.vmids") if "vmids" in block else ()
    pools = values.name_list(block["pools"], f"{where}.pools") if "pools" in block else ()
    if not vmids and not pools:
        raise ConfigError(f"{where}: name the guests with `vmids: [...]` and/or `pools: [...]`")
    return GuestSelector(frozenset(vmids), frozenset(pools))


def _name(block: Mapping[str, Any], where: str) -> str:
    if block.get("name") is None:
        raise ConfigError(f"{where}.name: required, a short name for the rule")
    return values.text(block["name"], f"{where}.name")


def _group(kind: type[_Group], entry: Any, where: str, source: str) -> _Group:
    block = values.mapping(entry, where)
    values.reject_unknown(block, {"name", "vmids", "pools", "strict"}, where)
    strict = values.flag(block.get("strict", True), f"{where}.strict")
    return kind(_name(block, where), _selector(block, where), source, strict)


def _node_affinity(entry: Any, where: str, source: str) -> NodeAffinityRule:
    block = values.mapping(entry, where)
    values.reject_unknown(block, {"name", "vmids", "pools", "nodes", "mode", "avoid"}, where)
    mode = values.choice(block.get("mode", "must"), f"{where}.mode", ("must", "should"))
    raw_nodes = block.get("nodes")
    if isinstance(raw_nodes, Mapping):
        nodes = tuple(
            (values.name(n, f"{where}.nodes"), values.count(p, f"{where}.nodes.{n}", 0, MAX_PRIORITY))
            for n, p in sorted(raw_nodes.items(), key=lambda item: str(item[0]))
        )
    else:
        nodes = tuple((n, 0) for n in values.name_list(raw_nodes, f"{where}.nodes"))
    if not nodes:
        raise ConfigError(f"{where}.nodes: list at least one node")
    return NodeAffinityRule(
        name=_name(block, where),
        selector=_selector(block, where),
        nodes=nodes,
        source=source,
        strict=mode == "must",
        negative=values.flag(block.get("avoid", False), f"{where}.avoid"),
    )


def _reservation(node: str, spec: Any, where: str, source: str) -> ReservationRule:
    block = values.mapping(spec, where)
    values.reject_unknown(block, {"cpu_cores", "memory"}, where)
    return ReservationRule(
        node=values.name(node, where),
        cpu_cores=values.number(block.get("cpu_cores", 0), f"{where}.cpu_cores", 0.0, MAX_RESERVED_CORES),
        mem_bytes=values.size_bytes(block.get("memory", 0), f"{where}.memory"),
        source=source,
    )


# --- PVE 9 HA rules -------------------------------------------------------------------------


def ha_rules(entries: list[dict[str, Any]]) -> RuleSet:
    """Translate GET /cluster/ha/rules entries (PVE 9) into rules; disabled rules are left out.

    node-affinity: `nodes` "pve1:2,pve2" (priority defaults to 0), `strict` 0/1, optional
    `affinity` negative (newer PVE). resource-affinity: `affinity` positive|negative, always
    enforced by HA, so strict here. Raises ConfigError naming a malformed rule.
    """
    node_rules: list[NodeAffinityRule] = []
    together: list[AffinityRule] = []
    apart: list[AntiAffinityRule] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"/cluster/ha/rules entry {index}: expected an object, got {type(entry).__name__}")
        name = str(entry.get("rule") or f"#{index}")
        where = f"/cluster/ha/rules rule {name!r}"
        if values.flag(entry.get("disable", 0), f"{where}.disable"):
            continue
        selector = GuestSelector(vmids=_ha_resources(entry.get("resources"), where))
        source = f"HA rule {name}"
        kind = entry.get("type")
        if kind == "node-affinity":
            node_rules.append(
                NodeAffinityRule(
                    name=name,
                    selector=selector,
                    nodes=_ha_nodes(entry.get("nodes"), where),
                    source=source,
                    strict=values.flag(entry.get("strict", 0), f"{where}.strict"),
                    negative=entry.get("affinity") == "negative",
                )
            )
        elif kind == "resource-affinity":
            affinity = entry.get("affinity")
            if affinity == "positive":
                together.append(AffinityRule(name, selector, source))
            elif affinity == "negative":
                apart.append(AntiAffinityRule(name, selector, source))
            else:
                raise ConfigError(f"{where}: affinity must be positive or negative, got {affinity!r}")
        # Rule types added by later PVE releases are not ours to interpret: leave them to HA.
    return RuleSet(anti_affinity=tuple(apart), affinity=tuple(together), node_affinity=tuple(node_rules))


def _ha_resources(raw: Any, where: str) -> frozenset[int]:
    vmids: set[int] = set()
    for sid in str(raw or "").split(","):
        sid = sid.strip()
        if not sid:
            continue
        kind, _, vmid = sid.partition(":")
        if kind not in HA_SID_PREFIX.values() or not vmid.isdecimal():
            raise ConfigError(f"{where}: resource {sid!r} is not of the form vm:<vmid> or ct:<vmid>")
        vmids.add(values.vmid(vmid, f"{where}: resource {sid!r}"))
    if not vmids:
        raise ConfigError(f"{where}: lists no resources")
    return frozenset(vmids)


def _ha_nodes(raw: Any, where: str) -> tuple[tuple[str, int], ...]:
    nodes: list[tuple[str, int]] = []
    for item in str(raw or "").split(","):
        item = item.strip()
        if not item:
            continue
        node, _, priority = item.partition(":")
        if priority and not (priority.isdecimal() and len(priority) < 10):
            raise ConfigError(f"{where}: node entry {item!r} is not of the form node or node:priority")
        nodes.append((node, int(priority or 0)))
    if not nodes:
        raise ConfigError(f"{where}: lists no nodes")
    return tuple(nodes)


# --- guest tags -----------------------------------------------------------------------------


def tag_rules(guests: Iterable[Guest]) -> RuleSet:
    """Rules carried by guest tags: ignore, anti-affinity, affinity and pin (see docs/rules.md)."""
    ignored: dict[str, set[int]] = {}
    apart: dict[str, set[int]] = {}
    apart_tags: dict[str, set[str]] = {}  # the tags that formed each group, for the rule's source
    together: dict[str, set[int]] = {}
    pins: dict[int, set[str]] = {}
    for guest in guests:
        for tag in sorted(t for t in guest.tags if t == IGNORE_TAG or t.startswith(IGNORE_PREFIX)):
            ignored.setdefault(tag, set()).add(guest.vmid)
        for prefix in ANTI_AFFINITY_PREFIXES:
            for group in tags_with_prefix(guest.tags, prefix):
                apart.setdefault(group, set()).add(guest.vmid)
                apart_tags.setdefault(group, set()).add(prefix + group)
        for prefix in AFFINITY_PREFIXES:
            for group in tags_with_prefix(guest.tags, prefix):
                together.setdefault(group, set()).add(guest.vmid)
        for prefix in PIN_PREFIXES:
            nodes = tags_with_prefix(guest.tags, prefix)
            if nodes:
                pins.setdefault(guest.vmid, set()).update(nodes)
    return RuleSet(
        ignore=tuple(IgnoreRule(GuestSelector(frozenset(v)), f"tag {tag}") for tag, v in sorted(ignored.items())),
        anti_affinity=tuple(
            AntiAffinityRule(group, GuestSelector(frozenset(vmids)), "tag " + ", ".join(sorted(apart_tags[group])))
            for group, vmids in sorted(apart.items())
        ),
        affinity=tuple(
            AffinityRule(group, GuestSelector(frozenset(vmids)), f"tag plb_affinity_{group}")
            for group, vmids in sorted(together.items())
        ),
        node_affinity=tuple(
            NodeAffinityRule(
                f"pin {vmid}",
                GuestSelector(frozenset({vmid})),
                tuple((n, 0) for n in sorted(nodes)),
                f"tag plb_pin_{'/'.join(sorted(nodes))}",
            )
            for vmid, nodes in sorted(pins.items())
        ),
    )
