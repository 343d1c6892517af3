"""What the model sees: a compact JSON summary of the observation our own plan was made from.

Nodes with their figures and limits, the guests (largest first, at most `max_guests`) with
the window figures the planner used and the live ones (their difference is the trend the
window hides) and, with Prometheus, each guest's and node's trend (its slope over the window),
tags, pools and why a guest may not move, every hard and soft rule resolved
against this cluster, the rule problems, and our own plan with its reasons. With
`anonymize_names` guest names are left out, and replaced by `guest-<vmid>` wherever our
own texts (reasons, problems) mention them. Pure: no I/O. docs/advisor.md shows an example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from planner.constraints import Constraints
from planner.model import ClusterModel, Plan
from planner.placement import Demand, Limits, demand_of
from planner.policy import GIB, Policy
from planner.rules import RuleSet
from pveapi.inventory import Guest

SUMMARY_VERSION = 1
MIN_NAME_TO_SCRUB = 3  # shorter names would match ordinary words

ABOUT = {
    "units": "memory in GiB (2^30 bytes); CPU in cores; load = weighted CPU and memory utilisation, 0..1",
    "imbalance": "Proxmox CRS imbalance of the online nodes' loads, 0 (even) .. 1 (all on one node)",
    "nodes": "state online/maintenance/offline; only online nodes outside maintenance may receive guests; "
             "mem_limit_gib is the memory no step may exceed (RAM less headroom and reservations)",
    "guests": "cpu_cores/mem_gib: the figures planning uses (window statistic from history, or live); "
              "*_now: the live reading; not_movable: why the guest must stay where it is",
    "rules": "anti-affinity: members on different nodes; affinity: members on one node; "
             "node-affinity: allowed nodes (strict) or preferred nodes (soft)",
    "current_plan": "pvebalance's own plan for the same cluster, for comparison",
}
ABOUT_TRENDS = {"trend_per_hour": "least-squares slope over the window of cpu_cores and mem_gib, per hour; "
                                  "null: too few samples"}


def build_summary(
    model: ClusterModel, rules: RuleSet, policy: Policy, plan: Plan, max_guests: int, anonymize: bool,
    statistic: str | None = None, trends: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """`trends`: /cluster/resources id -> (cores, bytes) per hour (PromQL.trends); None: no
    Prometheus, and no trend fields."""
    constraints = Constraints(model, rules, policy)
    trend = _trend_of(trends)
    scrub = _scrubber(model, anonymize)
    loads = {n.name: n for n in plan.nodes_before}
    nodes = []
    for node in sorted(model.nodes, key=lambda n: n.name):
        limit = Limits.of(node, policy, *constraints.reservations.get(node.name, (0.0, 0)))
        load = loads.get(node.name)
        nodes.append({
            "name": node.name,
            "state": load.state if load else ("online" if node.online else "offline"),
            "cpu_threads": node.maxcpu,
            "mem_gib": _gib(node.maxmem),
            "mem_limit_gib": _gib(limit.mem),
            "vcpu_limit": limit.vcpus,
            "cpu_cores": round(load.cpu_cores, 2) if load else None,
            "mem_used_gib": _gib(load.mem_bytes) if load else None,
            "load": round(load.load, 3) if load else None,
            **trend(node.id),
        })
    demand = {g.vmid: demand_of(g, model) for g in model.guests}
    ordered = sorted(model.guests, key=lambda g: (-demand[g.vmid].mem, -demand[g.vmid].cpu, g.vmid))
    guests = [{**_guest(g, model, constraints, demand[g.vmid], anonymize), **trend(g.id)} for g in ordered[:max_guests]]
    return {
        "summary_version": SUMMARY_VERSION,
        "about": ABOUT if trends is None else {**ABOUT, **ABOUT_TRENDS},
        "window": model.window,
        "statistic": statistic,
        "imbalance": plan.imbalance_before,
        "limits": {"cpu_overcommit": policy.cpu_overcommit, "memory_headroom_fraction": policy.memory_headroom.fraction},
        "nodes": nodes,
        "guests": guests,
        "guests_not_listed": max(0, len(ordered) - max_guests),
        "rules": [_scrub_all(r, scrub) for r in _rules(constraints)],
        "problems": [scrub(p) for p in plan.problems],
        "current_plan": {
            "imbalance_after": plan.imbalance_after,
            "moves": [
                {"vmid": m.vmid, "from": m.source, "to": m.target, "kind": m.kind.value, "reason": scrub(m.reason)}
                for m in plan.moves
            ],
        },
    }


def _guest(guest: Guest, model: ClusterModel, constraints: Constraints, demand: Demand, anonymize: bool) -> dict[str, Any]:
    usage = model.guest_usage.get(guest.vmid)
    entry: dict[str, Any] = {"vmid": guest.vmid}
    if not anonymize:
        entry["name"] = guest.name
    entry.update({
        "type": guest.type,
        "node": guest.node,
        "status": guest.status,
        "vcpus": guest.maxcpu,
        "mem_max_gib": _gib(guest.maxmem),
        "cpu_cores": round(demand.cpu, 2),
        "mem_gib": _gib(demand.mem),
        "cpu_cores_now": round(guest.cpu_cores_used, 2),
        "mem_gib_now": _gib(guest.mem),
        "figures": usage.source if usage else "live",
        "tags": sorted(guest.tags),
        "pool": guest.pool,
        "ha": guest.ha_managed,
    })
    reason = constraints.skip_reason.get(guest.vmid)
    if reason is not None:
        entry["not_movable"] = reason
    return entry


def _trend_of(trends: Mapping[str, tuple[float, float]] | None) -> Callable[[str], dict[str, Any]]:
    """The `trend_per_hour` field of one node or guest by its id; no field without Prometheus."""
    def trend(resource_id: str) -> dict[str, Any]:
        if trends is None:
            return {}
        slope = trends.get(resource_id)
        if slope is None:
            return {"trend_per_hour": None}
        cores, size = slope
        return {"trend_per_hour": {"cpu_cores": round(cores, 3), "mem_gib": round(size / GIB, 3)}}
    return trend


def _rules(constraints: Constraints) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"kind": kind, "rule": g.label, "strict": g.strict, "guests": list(g.members)}
        for kind, groups in (("anti-affinity", constraints.apart), ("affinity", constraints.together))
        for g in groups
    ]
    for strict, allowed, labels in ((True, constraints.allowed, constraints.allowed_by),
                                    (False, constraints.preferred, constraints.preferred_by)):
        by_rule: dict[tuple[str, frozenset[str]], list[int]] = {}
        for vmid, nodes in sorted(allowed.items()):
            by_rule.setdefault((labels[vmid], nodes), []).append(vmid)
        out += [
            {"kind": "node-affinity", "rule": label, "strict": strict, "guests": vmids, "nodes": sorted(nodes)}
            for (label, nodes), vmids in by_rule.items()
        ]
    return out


def _scrubber(model: ClusterModel, anonymize: bool) -> Callable[[str], str]:
    """Replaces guest names in our own texts with `guest-<vmid>` when names must stay here."""
    names = {g.name: g.vmid for g in model.guests if len(g.name) >= MIN_NAME_TO_SCRUB}
    if not anonymize or not names:
        return lambda text: text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")(?![\w-])")
    return lambda text: pattern.sub(lambda m: f"guest-{names[m.group(1)]}", text)


def _scrub_all(entry: Mapping[str, Any], scrub: Callable[[str], str]) -> dict[str, Any]:
    return {k: scrub(v) if isinstance(v, str) else v for k, v in entry.items()}


def _gib(size: int) -> float:
    return round(size / GIB, 2)
