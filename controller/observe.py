"""Observing the cluster: placement, HA state and rules live from the Proxmox API, usage
history from Prometheus, folded into the planner's `ClusterModel`.

API cost per observation is fixed: /cluster/resources, /cluster/ha/status/current,
/cluster/ha/rules and /cluster/options (4 calls whatever the size), plus one migrate
precondition call per guest a plan wants to move (`movable`), never one per guest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from controller.promql import CLOCK_SKEW, History, PrometheusError, PromQL
from planner.model import ClusterModel, Usage, UsageSource
from pveapi.client import PveClient
from pveapi.errors import ApiError, ErrorKind
from pveapi.inventory import Guest, Inventory, Node, guests_by_node

log = structlog.get_logger("pvebalance.observe")


@dataclass(frozen=True)
class Observation:
    inventory: Inventory
    model: ClusterModel
    ha_rule_entries: tuple[Mapping[str, Any], ...]  # PVE 9 /cluster/ha/rules, empty on PVE 8
    leave_alone: Mapping[int, str]  # vmid -> why the controller must not move it this cycle
    history: History | None  # None when Prometheus is not configured or did not answer
    data_problem: str | None  # why Prometheus figures were not used (None: used, or not configured)
    warnings: tuple[str, ...]
    at: float


def observe(client: PveClient, promql: PromQL | None, at: float | None = None, pressure: bool = False) -> Observation:
    """Read the cluster once (with `pressure`, every node's stall too). Raises ApiError only when
    /cluster/resources itself fails."""
    at = time.time() if at is None else at
    inventory = client.resources()
    warnings: list[str] = []
    maintenance = _maintenance_nodes(client, inventory, warnings)
    ha_rules, rules_known = _ha_rules(client, warnings)
    leave_alone: dict[int, str] = {}
    if _ha_auto_rebalance(client, warnings):
        warnings.append("Proxmox HA auto-rebalance is on (datacenter.cfg crs): HA guests are left to it")
        leave_alone.update({g.vmid: "HA auto-rebalance manages it" for g in inventory.guests if g.ha_managed})
    if not rules_known:
        leave_alone.update(
            {g.vmid: "HA rules could not be read" for g in inventory.guests if g.ha_managed and g.vmid not in leave_alone}
        )
    history, problem = _history(promql, at, pressure)
    if problem is not None:
        warnings.append(problem)
    fresh = history if problem is None else None
    node_pressure = fresh.node_pressure() if fresh is not None else {}
    if pressure and fresh is not None and promql is not None and not node_pressure:
        warnings.append(
            f"policy.pressure_weight is set but {promql.where} has no pve_node_pressure_ratio "
            "series: run pvebalance-exporter with --collector.pressure (PSI needs PVE 9); loads are utilisation alone"
        )
    guest_usage = {g.vmid: usage_of(g, fresh) for g in inventory.guests}
    model = ClusterModel(
        nodes=inventory.nodes,
        guests=inventory.guests,
        guest_usage=guest_usage,
        node_usage=node_usage(inventory.nodes, inventory.guests, guest_usage),
        maintenance=frozenset(maintenance),
        window=fresh.window if fresh is not None else "live",
        node_pressure=node_pressure,
        guest_pressure=fresh.guest_stall() if fresh is not None else {},
    )
    for warning in warnings:
        log.warning("observe.warning", message=warning)
    return Observation(inventory, model, tuple(ha_rules), leave_alone, history, problem, tuple(warnings), at)


def cluster_identity(client: PveClient) -> str:
    """Which cluster the API belongs to, for state that must not leak between clusters:
    `cluster <name>` from GET /cluster/status, or `standalone node <name>` on a node that is
    in no cluster (or `nodes a,b` when the token may not read the status: Sys.Audit on /)."""
    try:
        status = client.get("/cluster/status")
    except ApiError as exc:
        if exc.kind is not ErrorKind.PERMISSION:
            raise
        status = None
    entries = [e for e in status if isinstance(e, Mapping)] if isinstance(status, list) else []
    name = next((str(e.get("name")) for e in entries if e.get("type") == "cluster" and e.get("name")), None)
    if name is not None:
        return f"cluster {name}"
    nodes = sorted(str(e.get("name")) for e in entries if e.get("type") == "node")
    if len(nodes) == 1:
        return f"standalone node {nodes[0]}"
    return "nodes " + ",".join(nodes or sorted(n.name for n in client.resources().nodes))


def _history(promql: PromQL | None, at: float, pressure: bool) -> tuple[History | None, str | None]:
    if promql is None:
        return None, None
    try:
        history = promql.history(at, pressure)
    except PrometheusError as exc:
        return None, str(exc)
    if history.data_age is None and history.future_samples:
        return history, (
            f"{promql.where}: the newest pve_* samples are dated in the future (more than {CLOCK_SKEW:.0f}s ahead): "
            "check the clocks of this host, Prometheus and the exporter"
        )
    if history.data_age is None:
        return history, f"{promql.where} has no recent pve_* samples - is the exporter scraped?"
    if not history.fresh:
        return history, (
            f"{promql.where}: newest sample is {history.data_age:.0f}s old, "
            f"over prometheus.max_data_age ({history.max_age:.0f}s)"
        )
    return history, None


def usage_of(guest: Guest, history: History | None) -> Usage:
    """The guest's figures from `history` when it has them, else the live ones.

    CPU is the history's (a soft, averaged load). Memory is a hard limit: a guest holds what it
    holds now even when its average is lower (it grew, or the history is wrong), so the figure
    is the larger of history and live - for the planner, the step checker and the executor alike.
    """
    # A stopped guest uses nothing now, whatever its history says.
    if history is not None and guest.running:
        figures = history.usage(guest.id)
        if figures is not None:
            return Usage(figures[0], max(int(figures[1]), guest.mem), "prometheus")
    return Usage(guest.cpu_cores_used, guest.mem, "live")


def fit_usage(planned: Usage | None, live: Guest) -> Usage:
    """A guest's figures for a re-check right before it moves: the observation's, with memory
    never below what the live reading shows now (`planned` None: the live figures)."""
    if planned is None:
        return usage_of(live, None)
    return replace(planned, mem_bytes=max(planned.mem_bytes, live.mem if live.running else 0))


def node_usage(nodes: Iterable[Node], guests: Iterable[Guest], guest_usage: Mapping[int, Usage]) -> dict[str, Usage]:
    """Every node's demand (`_node_usage`) for a placement."""
    by_node = guests_by_node(list(guests))
    return {n.name: _node_usage(n, by_node.get(n.name, []), guest_usage) for n in nodes}


def _node_usage(node: Node, guests_here: list[Guest], guest_usage: Mapping[int, Usage]) -> Usage:
    """A node's demand: its current guests' demand plus the host's own use.

    Not the node's window average: that still counts guests that left during the window (and
    misses those that arrived), so a node just relieved by a migration would look loaded and the
    next cycle would move guests again. The host's own use (kernel, ZFS ARC, PVE daemons) is
    the live node reading less its guests' live readings: one instant, the current placement.
    """
    overhead_cpu = max(0.0, node.cpu_cores_used - sum(g.cpu_cores_used for g in guests_here))
    overhead_mem = max(0, node.mem - sum(g.mem for g in guests_here))
    demands = [guest_usage[g.vmid] for g in guests_here]
    source: UsageSource = "prometheus" if any(d.source == "prometheus" for d in demands) else "live"
    return Usage(
        overhead_cpu + sum(d.cpu_cores for d in demands), overhead_mem + sum(d.mem_bytes for d in demands), source
    )


def _maintenance_nodes(client: PveClient, inventory: Inventory, warnings: list[str]) -> set[str]:
    nodes = {n.name for n in inventory.nodes if n.hastate == "maintenance"}
    try:
        status = client.get("/cluster/ha/status/current")
    except ApiError as exc:
        warnings.append(f"HA status not read, maintenance nodes only from /cluster/resources: {exc}")
        return nodes
    for entry in status if isinstance(status, list) else []:
        # The LRM of a node in maintenance reports e.g. "pve1 (maintenance mode, Mon Jan  5 ...)".
        if isinstance(entry, Mapping) and entry.get("type") in ("lrm", "node") and "maintenance" in str(entry.get("status", "")):
            nodes.add(str(entry.get("node")))
    return nodes


def _ha_rules(client: PveClient, warnings: list[str]) -> tuple[list[Mapping[str, Any]], bool]:
    """PVE 9 HA rules; ([], True) on PVE 8, where the path does not exist."""
    try:
        rules = client.get("/cluster/ha/rules")
    except ApiError as exc:
        if exc.kind is ErrorKind.NOT_IMPLEMENTED or exc.status == 404:
            return [], True
        warnings.append(f"HA rules not read, HA guests are left where they are: {exc}")
        return [], False
    if not isinstance(rules, list):
        warnings.append("HA rules answer is not a list, HA guests are left where they are")
        return [], False
    return [r for r in rules if isinstance(r, Mapping)], True


def _ha_auto_rebalance(client: PveClient, warnings: list[str]) -> bool:
    """True when datacenter.cfg `crs` turns on PVE's own HA auto-rebalance (PVE 9.2+)."""
    try:
        options = client.get("/cluster/options")
    except ApiError as exc:
        warnings.append(f"datacenter options not read, cannot tell whether HA auto-rebalance is on: {exc}")
        return False
    crs = options.get("crs") if isinstance(options, Mapping) else None
    return crs_auto_rebalance(crs)


def crs_auto_rebalance(crs: Any) -> bool:
    """Parse `crs` (a property string like `ha=dynamic,ha-auto-rebalance=1`, or its object form)."""
    if isinstance(crs, Mapping):
        items = {str(k): str(v) for k, v in crs.items()}
    else:
        items = dict(part.partition("=")[::2] for part in str(crs or "").split(",") if part)
    return items.get("ha-auto-rebalance", "0").strip().lower() in ("1", "true", "yes", "on")


def movable(
    client: PveClient, guests: Iterable[tuple[Guest, str]], allow_local_disks: bool
) -> tuple[dict[int, str], str | None]:
    """Ask the API's migrate precondition check about (guest, target) pairs.

    Returns vmid -> reason for each guest the API would refuse to move to that target, and a
    warning when the check could not be made. One GET per pair; containers have the check only
    on PVE 9 (501 on PVE 8: PVE decides at migrate time, and a refusal there is a dropped
    move, not a broken cluster). The check needs VM.Migrate: a read-only token plans without
    it (the refusal then shows up in `apply`, which needs VM.Migrate anyway).
    """
    blocked: dict[int, str] = {}
    warning: str | None = None
    for guest, target in guests:
        path = f"/nodes/{guest.node}/{guest.type}/{guest.vmid}/migrate"
        try:
            answer = client.get(path, target=target)
        except ApiError as exc:
            if exc.kind is ErrorKind.PERMISSION:
                warning = "the token may not run migrate precondition checks (VM.Migrate): local disks and resources are not checked"
            elif exc.kind is not ErrorKind.NOT_IMPLEMENTED:
                blocked[guest.vmid] = f"migrate check failed: {exc}"
            continue
        reason = _refusal(answer if isinstance(answer, Mapping) else {}, target, allow_local_disks)
        if reason:
            blocked[guest.vmid] = reason
    return blocked, warning


def _refusal(answer: Mapping[str, Any], target: str, allow_local_disks: bool) -> str | None:
    resources = answer.get("local_resources") or answer.get("local-resources") or []
    if resources:
        return f"local resources ({', '.join(map(str, resources))}): the API refuses to migrate it"
    not_allowed = answer.get("not_allowed_nodes") or answer.get("not-allowed-nodes") or {}
    if isinstance(not_allowed, Mapping) and target in not_allowed:
        detail = not_allowed[target]
        storages = detail.get("unavailable_storages") if isinstance(detail, Mapping) else None
        return f"target {target} cannot take it" + (f" (storage {', '.join(storages)} missing)" if storages else "")
    disks = answer.get("local_disks") or answer.get("local-disks") or []
    if disks and not allow_local_disks:
        names = ", ".join(str(d.get("volid", "?")) if isinstance(d, Mapping) else str(d) for d in disks)
        return f"local disks ({names}); set policy.allow_local_disks: true to copy them"
    return None
