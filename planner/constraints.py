"""The rules resolved against one cluster: who may move, where each guest may go, which groups
exist, and which rules cannot be satisfied at all.

Built once per plan (and once per check): the rule types stay declarative in `rules.py`,
this module answers the planner's and the checker's questions about them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pveapi.cpumodels import required_flags
from pveapi.inventory import HOST_CPU, Guest

from .model import ClusterModel
from .policy import GIB, Policy
from .rules import AffinityRule, AntiAffinityRule, GuestSelector, NodeAffinityRule, RuleSet, missing_guests, tag_rules


@dataclass(eq=False)
class Group:
    """One affinity or anti-affinity group with its members and where they are."""

    label: str  # e.g. "anti-affinity group 'dns' (tag exclude_dns)"
    members: tuple[int, ...]
    strict: bool
    excused: bool = False  # cannot be satisfied: reported once, only kept from getting worse
    nodes: Counter[str] = field(default_factory=Counter)

    def violation(self, together: bool) -> int:
        """How far the group is from satisfied: extra members sharing a node (apart), or
        members away from the group's fullest node (together)."""
        if together:
            return len(self.members) - max(self.nodes.values(), default=0)
        return sum(c - 1 for c in self.nodes.values() if c > 1)


class Constraints:
    def __init__(self, model: ClusterModel, rules: RuleSet, policy: Policy) -> None:
        rules = rules.merge(tag_rules(model.guests))
        self.guests: dict[int, Guest] = {g.vmid: g for g in model.guests}
        self.where: dict[int, str] = {g.vmid: g.node for g in model.guests}  # kept current by `moved`
        node_names = {n.name for n in model.nodes}
        self.by_lower = {n.name.lower(): n.name for n in model.nodes}
        self.nodes = {n.name: n for n in model.nodes}
        self._incompatible: dict[tuple[int, str], str | None] = {}  # see incompatible()
        self.maintenance = frozenset(
            {n for r in rules.maintenance for n in r.nodes if n in node_names}
            | (model.maintenance & node_names)
            | {n.name for n in model.nodes if n.hastate == "maintenance"}
        )
        self.usable = frozenset(n.name for n in model.nodes if n.online and n.name not in self.maintenance)
        self.closed = {n: r.source for r in rules.closed for n in r.nodes}  # may not receive guests
        self.problems: list[str] = []
        self.reservations: dict[str, tuple[float, int]] = {}
        for r in rules.reservations:
            cpu, mem = self.reservations.get(r.node, (0.0, 0))
            self.reservations[r.node] = (cpu + r.cpu_cores, mem + r.mem_bytes)
        unknown_maintenance = sorted({n for r in rules.maintenance for n in r.nodes} - node_names)
        if unknown_maintenance:
            self.problems.append(f"maintenance names unknown node(s) {', '.join(unknown_maintenance)}: ignored")

        self._by_pool: dict[str, list[int]] = {}
        for g in model.guests:
            if g.pool is not None:
                self._by_pool.setdefault(g.pool, []).append(g.vmid)
        ignored: dict[int, str] = {}
        for ignore in rules.ignore:  # its own name: `r` above is a ReservationRule
            for vmid in self.members(ignore.selector):
                ignored.setdefault(vmid, ignore.source)
        self.skip_reason: dict[int, str] = {}
        online = {n.name for n in model.nodes if n.online}
        for guest in model.guests:
            reason = _skip_reason(guest, ignored.get(guest.vmid), guest.vmid in model.pinned_local, online)
            if reason:
                self.skip_reason[guest.vmid] = reason

        self.allowed: dict[int, frozenset[str]] = {}  # strict node affinity; absent = anywhere
        self.allowed_by: dict[int, str] = {}
        self.stranded: set[int] = set()  # guests whose allowed nodes are all unusable right now
        self.preferred: dict[int, frozenset[str]] = {}  # soft node affinity
        self.preferred_by: dict[int, str] = {}
        for rule in rules.node_affinity:
            self._add_node_rule(rule)

        self.problems += missing_guests(rules, self.guests)
        self.apart = self._groups(rules.anti_affinity, "anti-affinity")
        self.together = self._groups(rules.affinity, "affinity")
        self.apart_of = _index(self.apart)
        self.together_of = _index(self.together)
        self._check_satisfiable()

    # --- building -------------------------------------------------------------------------

    def _add_node_rule(self, rule: NodeAffinityRule) -> None:
        listed = [(self.by_lower[n.lower()], p) for n, p in rule.nodes if n.lower() in self.by_lower]
        label = f"node affinity '{rule.name}' ({rule.source})"
        if not listed and rule.strict and not rule.negative:
            # A must-rule (a plb_pin_ tag) with a mistyped node: moving its guests anywhere could
            # break what was meant, so they stay where they are until the rule is fixed.
            members = self.members(rule.selector)
            self.problems.append(
                f"{label} names no node of this cluster ({', '.join(n for n, _ in rule.nodes)}): "
                f"{', '.join(map(str, members)) or 'its guests'} stay where they are until it is fixed"
            )
            for vmid in members:
                self.skip_reason.setdefault(vmid, f"{label} names no node of this cluster: held where it is")
            return
        if not listed:
            self.problems.append(f"{label} names no node of this cluster: ignored")
            return
        if rule.negative:
            effective = self.usable - {n for n, _ in listed}
        else:
            available = [(n, p) for n, p in listed if n in self.usable]
            if available:
                # Like PVE HA: only the highest-priority group of available nodes counts.
                top = max(p for _, p in available)
                effective = frozenset(n for n, p in available if p == top)
            else:
                effective = frozenset(n for n, _ in listed)
        target, labels = (self.allowed, self.allowed_by) if rule.strict else (self.preferred, self.preferred_by)
        for vmid in self.members(rule.selector):
            previous = target.get(vmid)
            target[vmid] = effective if previous is None else previous & effective
            labels[vmid] = label if previous is None else f"{labels[vmid]} and {label}"

    def compatibility_notes(self) -> list[str]:
        """One line per guest for which CPU or storage compatibility leaves usable nodes out (for the
        plan's notes: the step checker and the executor's re-checks build Constraints too, and need none)."""
        notes = []
        for vmid, guest in sorted(self.guests.items()):
            if guest.cputype is None and guest.disk_storages is None:
                continue
            why = {n: r for n in sorted(self.usable - {guest.node}) if (r := self.incompatible(vmid, n))}
            if why:
                notes.append(f"guest {vmid} ({guest.name}) may not go to " + "; ".join(f"{n}: {r}" for n, r in why.items()))
        return notes

    def _groups(self, group_rules: Sequence[AntiAffinityRule | AffinityRule], kind: str) -> list[Group]:
        groups = []
        for rule in group_rules:
            members = self.members(rule.selector)
            if len(members) < 2:
                continue
            group = Group(f"{kind} group '{rule.name}' ({rule.source})", members, rule.strict)
            group.nodes.update(self.guests[v].node for v in members)
            groups.append(group)
        return groups

    def _check_satisfiable(self) -> None:
        for vmid, nodes in sorted(self.allowed.items()):
            if not nodes:
                self.problems.append(
                    f"guest {vmid}: {self.allowed_by[vmid]} leave no node it may run on; it is not moved"
                )
                self.skip_reason.setdefault(vmid, "node affinity rules contradict each other")
            elif not nodes & self.usable:
                self.stranded.add(vmid)
                if self.where[vmid] not in nodes:
                    self.problems.append(
                        f"guest {vmid}: {self.allowed_by[vmid]} allows only {', '.join(sorted(nodes))}, "
                        "now offline or in maintenance; it stays where it is until one is back"
                    )
        for group in self.apart:
            if not group.strict:
                continue
            room = set().union(*(self.allowed.get(v, self.usable) for v in group.members)) & self.usable
            if len(group.members) > len(room):
                group.excused = True
                self.problems.append(
                    f"{group.label} has {len(group.members)} guests but only {len(room)} usable node(s) "
                    "they may run on: cannot be satisfied; it is only kept from getting worse"
                )
        for group in self.together:
            if not group.strict:
                continue
            common = self.usable
            for v in group.members:
                common = common & self.allowed.get(v, self.usable)
            fixed = {self.guests[v].node for v in group.members if v in self.skip_reason}
            clash = [a.label for a in self.apart if a.strict and len(set(a.members) & set(group.members)) > 1]
            why = (
                "its guests share no node they may all run on" if not common
                else f"guests that cannot move sit on different nodes ({', '.join(sorted(fixed))})" if len(fixed) > 1
                else f"it overlaps {clash[0]}" if clash
                else ""
            )
            if why:
                group.excused = True
                self.problems.append(f"{group.label} cannot be satisfied: {why}; it is only kept from getting worse")

    # --- questions ------------------------------------------------------------------------

    def members(self, selector: GuestSelector) -> tuple[int, ...]:
        """The guests a rule names, sorted: by VMID or by pool, without scanning every guest."""
        found = {v for v in selector.vmids if v in self.guests}
        for pool in selector.pools:
            found.update(self._by_pool.get(pool, ()))
        return tuple(sorted(found))

    def rules_allow(self, vmid: int, target: str, mandatory: bool, moving_group: Group | None = None) -> bool:
        """May this guest move to `target` without breaking or worsening a rule?

        Balancing (`mandatory` False) also keeps soft rules from getting worse and never moves a
        member of an affinity group away from its group. `moving_group` is an affinity group
        being moved as a whole, which its members may leave for the same target.
        """
        if target not in self.usable or target in self.closed or self.incompatible(vmid, target):
            return False
        allowed = self.allowed.get(vmid)
        if allowed is not None and target not in allowed:
            return False
        for group in self.apart_of.get(vmid, ()):
            if (group.strict or not mandatory) and group.nodes[target] > 0:
                return False
        for group in self.together_of.get(vmid, ()):
            if group is not moving_group and (group.strict or not mandatory) and not self._joins(group, vmid, target):
                return False
        if not mandatory:
            preferred = self.preferred.get(vmid)
            if preferred is not None and self.where[vmid] in preferred and target not in preferred:
                return False
        return True

    def incompatible(self, vmid: int, target: str) -> str | None:
        """Why the guest cannot run on `target` whatever the rules say (CPU model, storage), or None.
        Asked in the planner's hot loops; the answer depends only on what was observed, so it is
        worked out once per guest and node."""
        key = (vmid, target)
        if key not in self._incompatible:
            self._incompatible[key] = self._why_incompatible(vmid, target)
        return self._incompatible[key]

    def _why_incompatible(self, vmid: int, target: str) -> str | None:
        """A `cpu: host` guest sees its host's CPU: live migration to another CPU model can crash it,
        so it only goes to nodes with the model it started on; a named model (`x86-64-v3`,
        `Skylake-Server`, ...) only to nodes whose CPU flags offer it (pveapi/cpumodels.py). Disks need their storage on the
        target (PVE refuses otherwise), and disks on a local storage room on the target's (the
        copy would fail when it fills up). Unknown figures (not read) are not held against a node.
        """
        guest, node = self.guests[vmid], self.nodes.get(target)
        if node is None:
            return None
        if guest.cputype == HOST_CPU:
            home = self.nodes[guest.node].cpu_model if guest.node in self.nodes else None
            if home is not None and node.cpu_model is not None and node.cpu_model != home:
                return f"cpu: host needs CPU model {home}, {target} has {node.cpu_model}"
        needs = required_flags(guest.cputype)
        if needs is not None and node.cpu_flags is not None and not needs <= node.cpu_flags:
            return f"cpu: {guest.cputype} needs CPU flags {' '.join(sorted(needs - node.cpu_flags))}, which {target} lacks"
        if guest.disk_storages and node.storages:
            missing = sorted(guest.disk_storages - node.storages)
            if missing:
                return f"storage {', '.join(missing)} is not available on {target}"
        # Local disks are copied to the same storage on the target: it needs room for them.
        free = dict(node.local_free)
        for storage, size in guest.disk_bytes:
            if storage in free and size > free[storage]:
                return (f"local storage {storage} on {target} has {free[storage] / GIB:.1f} GiB free, "
                        f"its disks there need {size / GIB:.1f} GiB")
        return None

    def _joins(self, group: Group, vmid: int, target: str) -> bool:
        """Moving a member is fine only if it ends where more of its group is than where it was."""
        return group.nodes[target] > group.nodes[self.where[vmid]] - 1

    def moved(self, vmid: int, target: str) -> None:
        source = self.where[vmid]
        for group in self.apart_of.get(vmid, ()) + self.together_of.get(vmid, ()):
            group.nodes[source] -= 1
            group.nodes[target] += 1
        self.where[vmid] = target

    def violations(self) -> dict[str, int]:
        """Current violation size of every hard rule (0 = satisfied)."""
        out = {g.label: g.violation(False) for g in self.apart if g.strict}
        out.update({g.label: g.violation(True) for g in self.together if g.strict})
        return out


def _index(groups: list[Group]) -> dict[int, tuple[Group, ...]]:
    index: dict[int, tuple[Group, ...]] = {}
    for group in groups:
        for vmid in group.members:
            index[vmid] = index.get(vmid, ()) + (group,)
    return index


def _skip_reason(guest: Guest, ignored: str | None, local: bool, online: set[str]) -> str | None:
    if guest.node not in online:
        return f"its node {guest.node} is offline: Proxmox cannot migrate it until the node is back"
    if ignored:
        return f"ignored ({ignored})"
    if guest.template:
        return "template: not balanced"
    if guest.lock:
        return f"locked ({guest.lock}): Proxmox refuses to migrate a locked guest"
    # `pinned_local` holds what the API refuses under this policy (observe applied
    # allow_local_disks already): weighing the policy again would plan refused moves.
    if local:
        return "Proxmox refuses to migrate it: local disks (see policy allow_local_disks) or local resources"
    return None
