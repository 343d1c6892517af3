"""One observe -> rules -> plan cycle, shared by `plan`, `apply` and `run`.

The planner sees every rule the cluster has: the config's, PVE 9 HA rules, and guests the
controller must leave alone this cycle (HA auto-rebalance owns them, a cooldown, a failed
migration). Guests a plan wants to move are then checked with the API's migrate
precondition; any it would refuse are pinned and the plan is made again (a few rounds at
most, so API calls stay bounded by the plan size).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from controller.compat import plan_described
from controller.config import Config
from controller.drainstate import DrainState, drain_rules
from controller.observe import Observation, cluster_identity, movable, observe
from controller.promql import PromQL
from controller.state import LoopState
from planner.framework import plan as make_plan
from planner.model import ClusterModel, Plan, Skipped
from planner.rules import GuestSelector, IgnoreRule, RuleSet, ha_rules
from pveapi.client import PveClient
from pveapi.errors import ApiError, ErrorKind
from pveapi.tasks import MIGRATE_TASK

log = structlog.get_logger("pvebalance.cycle")

PRECONDITION_ROUNDS = 3
# Task types that move a guest: qemu and container migrations, and HA's own requests for them.
MIGRATION_TASKS = (*MIGRATE_TASK.values(), "hamigrate", "harelocate")


@dataclass(frozen=True)
class Cycle:
    observation: Observation
    rules: RuleSet  # every rule the plan honoured
    model: ClusterModel  # what the plan was made from (with guests the API would refuse pinned)
    plan: Plan
    precondition_calls: int
    why_not: str | None  # why acting on this plan would be unsafe (stale or missing data)
    notes: tuple[str, ...] = ()  # warnings from planning itself (e.g. checks that could not run)

    @property
    def actionable(self) -> bool:
        return self.why_not is None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.observation.warnings + self.notes


def hold_rules(hold: Mapping[int, str]) -> RuleSet:
    """Guests not to move this cycle, one ignore rule per reason so the report can say why."""
    by_reason: dict[str, set[int]] = {}
    for vmid, reason in hold.items():
        by_reason.setdefault(reason, set()).add(vmid)
    return RuleSet(
        ignore=tuple(IgnoreRule(GuestSelector(vmids=frozenset(v)), reason) for reason, v in sorted(by_reason.items()))
    )


def cooldown_holds(
    client: PveClient, config: Config, state: LoopState | None = None, now: float | None = None
) -> dict[int, str]:
    """Guests in their cooldown: moved by this controller (the state file, none when it does
    not exist yet), or by anyone else (another controller, a person, HA) as far as the
    cluster's recent task list shows."""
    state = LoopState.load(config.run.state_file, cluster_identity(client), writable=False) if state is None else state
    now = time.time() if now is None else now
    cooldown = config.run.cooldown
    holds = recent_migrations(client, cooldown, now)
    holds.update({vmid: f"cooldown: moved {cooldown - left:.0f}s ago" for vmid, left in state.cooling(now, cooldown).items()})
    return holds


def recent_migrations(client: PveClient, cooldown: float, now: float) -> dict[int, str]:
    """Guests whose migration started within `cooldown`, from GET /cluster/tasks: each node's
    running and 25 most recent tasks, so a busy node's older migrations may be missing."""
    if cooldown <= 0:
        return {}
    try:
        tasks = client.get("/cluster/tasks")
    except ApiError as exc:
        if exc.kind is ErrorKind.AUTH:
            raise  # a wrong token: nothing else will work either
        log.warning("cooldown.tasks_unreadable", error=str(exc))  # the state file still holds our own moves
        return {}
    newest: dict[int, Mapping[str, Any]] = {}
    for task in tasks if isinstance(tasks, list) else []:
        try:
            if task["type"] not in MIGRATION_TASKS or now - float(task["starttime"]) >= cooldown:
                continue
            vmid = int(task["id"])
        except (KeyError, TypeError, ValueError):
            continue  # not a guest migration in the documented shape
        if vmid not in newest or float(task["starttime"]) > float(newest[vmid]["starttime"]):
            newest[vmid] = task
    return {
        vmid: f"cooldown: migrated by {_who(task)} {_ago(now - float(task['starttime']))} (task on {task.get('node')})"
        for vmid, task in newest.items()
    }


def _ago(seconds: float) -> str:
    """How long ago a task started; a start in the future means the cluster's clock is ahead
    (a simulator running faster than real time, or a node off NTP), and the text says so."""
    if seconds >= 0:
        return f"{seconds:.0f}s ago"
    return f"just now (the cluster's clock is {-seconds:.0f}s ahead of this host's)"


def _who(task: Mapping[str, Any]) -> str:
    return f"{task.get('user')}!{task['tokenid']}" if task.get("tokenid") else str(task.get("user"))


def cycle_rules(
    config: Config, observation: Observation, hold: Mapping[int, str], drained: frozenset[str] | None = None
) -> RuleSet:
    """The config's rules, the cluster's HA rules, this cycle's guests to leave alone and the
    drained nodes (`drained`, else those the drain state file names)."""
    ha = ha_rules([dict(e) for e in observation.ha_rule_entries])
    present = {g.vmid for g in observation.inventory.guests}  # a cooldown may outlive its guest: not a rule problem
    held = {vmid: why for vmid, why in {**observation.leave_alone, **hold}.items() if vmid in present}
    drained = DrainState.load(config.run.state_file).drained if drained is None else drained
    return config.rules.merge(ha).merge(hold_rules(held)).merge(drain_rules(drained))


def run_cycle(
    client: PveClient,
    promql: PromQL | None,
    config: Config,
    hold: Mapping[int, str] | None = None,
    at: float | None = None,
    fallback_to_live: bool | None = None,
    on_step: Callable[[str], None] = lambda step: None,
    drained: frozenset[str] | None = None,
    extra_rules: RuleSet | None = None,
) -> Cycle:
    """Observe and plan; `on_step` hears what it is doing now, for progress. `drained` overrides
    the drain state file's nodes; `extra_rules` are added for this cycle only (a drain's or a
    return's own rules)."""
    on_step("reading the cluster" + (" and its history from Prometheus" if promql is not None else ""))
    observation = observe(client, promql, at, pressure=config.policy.pressure_weight > 0)
    held = {**observation.leave_alone, **(hold or {})}
    rules = cycle_rules(config, observation, held, drained)  # merging leave_alone again changes nothing
    if extra_rules is not None:
        rules = rules.merge(extra_rules)
    model, plan, calls, notes = _plan_movable(client, observation.model, rules, config, held, on_step)
    fallback = config.run.fallback_to_live if fallback_to_live is None else fallback_to_live
    why_not = None
    if observation.data_problem is not None and not fallback:
        why_not = f"{observation.data_problem}; not acting on it (set run.fallback_to_live: true to use live figures)"
    return Cycle(observation, rules, model, plan, calls, why_not, notes)


def _plan_movable(
    client: PveClient, model: ClusterModel, rules: RuleSet, config: Config, held: Mapping[int, str],
    on_step: Callable[[str], None],
) -> tuple[ClusterModel, Plan, int, tuple[str, ...]]:
    refused: dict[int, str] = {}
    notes: list[str] = []
    checked: set[tuple[int, str]] = set()
    calls = 0
    guests = {g.vmid: g for g in model.guests}
    size = f"{len(model.guests)} guests on {len(model.nodes)} nodes"
    planning = 0.0  # the planner reads no clock: its time is measured here, over every replan

    def planner(m: ClusterModel) -> Plan:
        nonlocal planning
        started = time.perf_counter()
        try:
            return make_plan(m, rules, config.policy)
        finally:
            planning += time.perf_counter() - started

    for round_ in range(1, PRECONDITION_ROUNDS + 1):
        on_step(f"planning {size}" + (f" (round {round_}: without the guests the API refused)" if refused else ""))
        model, plan = plan_described(client, replace(model, pinned_local=frozenset(refused)), planner, notes)
        ask = [(guests[m.vmid], m.target) for m in plan.moves if (m.vmid, m.target) not in checked]
        if not ask:
            break
        on_step(f"asking the API whether {len(ask)} move(s) may start (migrate precondition)")
        checked.update((g.vmid, target) for g, target in ask)
        calls += len(ask)
        blocked, warning = movable(client, ask, config.policy.allow_local_disks)
        if warning is not None and warning not in notes:
            notes.append(warning)
        if not blocked:
            break
        refused.update(blocked)
    else:
        on_step(f"planning {size} (last round)")
        model, plan = plan_described(client, replace(model, pinned_local=frozenset(refused)), planner, notes)
    plan = replace(plan, planning_seconds=round(planning, 4))
    # The API's own reason, or why the controller holds a guest, beats the planner's generic line.
    reasons = {**held, **refused}
    listed = {s.vmid for s in plan.skipped}
    skipped = tuple(replace(s, reason=reasons[s.vmid]) if s.vmid in reasons else s for s in plan.skipped)
    extra = tuple(Skipped(v, guests[v].name, r) for v, r in sorted(refused.items()) if v not in listed)
    return model, replace(plan, skipped=skipped + extra), calls, tuple(notes)
