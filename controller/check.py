"""`pvebalance check`: is the config right, and can the controller see and do what it needs?

Each problem is one line saying what is wrong and what to do; notes are things that are fine
for planning but would stop `apply` or automatic `run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.config import Config
from controller.cycle import cycle_rules
from controller.lease import ClusterLease
from controller.observe import observe
from controller.promql import NEEDED_SERIES, PrometheusError, PromQL
from planner.constraints import Constraints
from pveapi.client import PveClient
from pveapi.errors import ApiError, ConfigError
from pveapi.inventory import Inventory

# Privilege -> (where it is needed, what for). Checked on `/` and `/vms` (propagated ACLs).
READ_PRIVILEGES = {
    "Sys.Audit": "read cluster, HA and datacenter status",
    "VM.Audit": "see guests (/cluster/resources leaves out what the token may not audit)",
}
MIGRATE_PRIVILEGE = "VM.Migrate"
LEASE_PRIVILEGE = "Pool.Allocate"  # to create, renew and delete the controller lease's pool


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # what was found, for the closing line


def check(config: Config, client: PveClient, promql: PromQL | None) -> CheckResult:
    result = CheckResult()
    inventory = _check_api(config, client, result)
    if inventory is not None:
        _check_rules(config, client, inventory, result)
    if promql is not None:
        _check_prometheus(promql, inventory, result)
    else:
        result.notes.append("prometheus is not configured: plans use live API figures only")
    return result


def _check_api(config: Config, client: PveClient, result: CheckResult) -> Inventory | None:
    try:
        version = client.get("/version")
        permissions = client.get("/access/permissions")
        inventory = client.resources()
    except ApiError as exc:
        result.problems.append(str(exc))
        return None
    result.facts.append(f"Proxmox VE {version.get('version', '?') if isinstance(version, Mapping) else '?'}")
    granted = _granted(permissions)
    for privilege, purpose in READ_PRIVILEGES.items():
        if privilege not in granted:
            result.problems.append(f"the API token lacks {privilege} on / (needed to {purpose}); grant it, e.g. the PVEAuditor role")
    if MIGRATE_PRIVILEGE not in granted:
        line = (
            f"the API token lacks {MIGRATE_PRIVILEGE} on /vms: apply and automatic run cannot migrate and plans skip "
            "the migrate precondition check; grant a role with VM.Migrate (docs/proxmox-permissions.md)"
        )
        (result.problems if config.run.automation == "automatic" else result.notes).append(line)
    online = len(inventory.online_nodes)
    if not inventory.guests:
        result.problems.append("the API token sees no guests: grant VM.Audit on /vms (or check the cluster has guests)")
    result.facts.append(f"{online}/{len(inventory.nodes)} nodes online, {len(inventory.guests)} guests")
    if config.run.lease == "cluster":
        _check_lease(config, client, result)
    return inventory


def _check_lease(config: Config, client: PveClient, result: CheckResult) -> None:
    path = f"/pool/{config.run.lease_pool}"
    try:
        granted = client.get("/access/permissions", path=path)
    except ApiError as exc:
        result.problems.append(str(exc))
        return
    privileges = granted.get(path) if isinstance(granted, Mapping) else None
    if not isinstance(privileges, Mapping) or not privileges.get(LEASE_PRIVILEGE):
        line = (
            f"the API token lacks {LEASE_PRIVILEGE} on {path}: apply and automatic run cannot take the controller "
            "lease; grant PVEPoolAdmin on /pool (docs/proxmox-permissions.md), or set run.lease: local if only one "
            "controller ever runs against this cluster"
        )
        (result.problems if config.run.automation == "automatic" else result.notes).append(line)
    try:
        holder = ClusterLease(client, config.run.lease_pool, config.run.lease_ttl).current()
    except (ApiError, ConfigError) as exc:
        result.problems.append(str(exc))
        return
    if holder is not None:
        result.notes.append(f"the controller lease (pool '{config.run.lease_pool}') is held: {holder.describe()}")


def _granted(permissions: Any) -> set[str]:
    if not isinstance(permissions, Mapping):
        return set()
    granted: set[str] = set()
    for path in ("/", "/vms"):
        privileges = permissions.get(path)
        if isinstance(privileges, Mapping):
            granted.update(str(p) for p, on in privileges.items() if on)
    return granted


def _check_rules(config: Config, client: PveClient, inventory: Inventory, result: CheckResult) -> None:
    """Every rule and tag problem a plan would report (the planner's own constraint checks, on
    the live cluster with its HA rules), and reservations naming nodes the cluster lacks."""
    try:
        observation = observe(client, None)
    except ApiError as exc:
        result.problems.append(str(exc))
        return
    rules = cycle_rules(config, observation, {})
    result.problems.extend(f"rules: {problem}" for problem in Constraints(observation.model, rules, config.policy).problems)
    nodes = {n.name for n in inventory.nodes}
    for rule in config.rules.reservations:
        if rule.node not in nodes:
            result.problems.append(
                f"rules: reservations names node {rule.node!r}, which is not in the cluster ({', '.join(sorted(nodes))})")


def _check_prometheus(promql: PromQL, inventory: Inventory | None, result: CheckResult) -> None:
    try:
        present = promql.series_present()
        history = promql.history()
    except PrometheusError as exc:
        result.problems.append(str(exc))
        return
    for name, count in present.items():
        if not count:
            result.problems.append(
                f"{promql.where} has no current {name} series: is pvebalance-exporter (or prometheus-pve-exporter) scraped?"
            )
    if all(present.values()):
        if history.data_age is None or not history.fresh:
            age = "none" if history.data_age is None else f"{history.data_age:.0f}s"
            result.problems.append(
                f"{promql.where}: newest sample age {age} is over prometheus.max_data_age ({history.max_age:.0f}s): check scraping"
            )
        else:
            result.facts.append(
                f"Prometheus: {present[NEEDED_SERIES[0]]} series, newest sample {history.data_age:.0f}s old, window {history.window}"
            )
    if inventory is not None and history.fresh:
        running = [g for g in inventory.guests if g.running]
        known = sum(1 for g in running if history.usage(g.id) is not None)
        result.facts.append(f"history for {known}/{len(running)} running guests (the rest plan from live figures)")
