"""Drain and return: empty one node for maintenance, remember where each guest came from, and
bring the guests back afterwards, as PVE HA's maintenance mode does for HA guests.

`drain_node` and `undrain_node` are the whole operation behind `pvebalance drain|undrain NODE`
(and, once the operator API exists, `POST /api/v1/nodes/{node}/drain`): they plan under every
rule and limit, then carry the plan out through the `Executor` the caller builds, which holds
its process's lock, lease, clock and progress output. Where state lives: controller/drainstate.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from controller.config import Config
from controller.cycle import Cycle, cooldown_holds, run_cycle
from controller.drainstate import DrainState
from controller.executor import ApplyReport, EventSink, Executor
from controller.promql import PromQL
from planner.model import Move, MoveKind, Plan, Skipped
from planner.rules import GuestSelector, NodeAffinityRule, RuleSet
from planner.verify import check_moves
from pveapi.client import PveClient
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.inventory import Inventory, Node

log = structlog.get_logger("pvebalance.drain")

# Builds the executor for one drain or return: the rules its re-checks must see, the plan it runs.
ExecutorFactory = Callable[[RuleSet, Plan], Executor]


@dataclass(frozen=True)
class DrainResult:
    node: str
    plan: Plan  # the moves carried out, in order
    report: ApplyReport | None  # None when there was nothing to move
    staying: tuple[Skipped, ...]  # guests that did not move, each with the reason

    def as_dict(self, action: str) -> Mapping[str, Any]:
        """The result as data (for `--output json` and the operator API)."""
        return {
            "node": self.node,
            "action": action,
            "moves": [{"vmid": m.vmid, "name": m.name, "source": m.source, "target": m.target, "reason": m.reason}
                      for m in self.plan.moves],
            "outcomes": [] if self.report is None else [
                {"vmid": o.move.vmid, "result": o.result, "detail": o.detail} for o in self.report.outcomes
            ],
            "staying": [{"vmid": s.vmid, "name": s.name, "reason": s.reason} for s in self.staying],
        }

    @property
    def lines(self) -> tuple[str, ...]:
        """One line per guest that did not move, for a person to read."""
        return tuple(f"{s.vmid} {s.name}: {s.reason}" for s in self.staying)


def drain_node(
    node: str, config: Config, client: PveClient, promql: PromQL | None, make_executor: ExecutorFactory,
    *, dry_run: bool = False, at: float | None = None,
) -> DrainResult:
    """Mark `node` drained, plan its evacuation under every rule and limit, and carry it out,
    remembering each guest that left. A dry run changes nothing, the drain state included."""
    at = time.time() if at is None else at
    _known_node(node, client.resources(), "drain")
    state = DrainState.load(config.run.state_file)
    if not dry_run:
        state.begin(node, at)  # first: from now on no plan, here or in `run`, places anything there
    cycle = run_cycle(client, promql, config, cooldown_holds(client, config, now=at), at=at,
                      fallback_to_live=True, drained=state.drained | {node})
    moves = tuple(m for m in cycle.plan.moves if m.kind is MoveKind.MANDATORY and m.source == node)
    plan = replace(cycle.plan, moves=moves)
    staying = tuple(
        Skipped(g.vmid, g.name, _planner_reason(g.vmid, cycle) or "no node has room for it under the rules")
        for g in cycle.observation.inventory.guests if g.node == node and g.vmid not in {m.vmid for m in moves}
    )
    report = None
    if moves:
        executor = make_executor(cycle.rules, plan)
        if not dry_run:
            executor.on_event = _remembering_origins(executor.on_event, state, node, at)
        report = executor.apply(plan, cycle.model)
    log.info("drain.done", node=node, moves=len(moves), staying=len(staying), dry_run=dry_run)
    return DrainResult(node, plan, report, staying)


def undrain_node(
    node: str, config: Config, client: PveClient, promql: PromQL | None, make_executor: ExecutorFactory,
    *, dry_run: bool = False, at: float | None = None,
) -> DrainResult:
    """End the drain of `node` and bring back the guests that left it where they fit and the
    rules allow; the others stay where they are, each with the reason."""
    state = DrainState.load(config.run.state_file)
    if node not in state.drained:
        raise ConfigError(f"undrain: node {node!r} is not drained (drained: {', '.join(sorted(state.drained)) or 'none'})")
    home = _known_node(node, inventory := client.resources(), "undrain")
    if not home.online:
        raise PvebalanceError(f"undrain: node {node!r} is offline; bring it back first, then undrain it")
    staying: list[Skipped] = []
    back: set[int] = set()
    for vmid in sorted(state.came_from.get(node, {})):
        guest = inventory.guest(vmid)
        if guest is None:
            staying.append(Skipped(vmid, str(vmid), "no longer exists"))
        elif guest.node == node:
            staying.append(Skipped(vmid, guest.name, f"already on {node}"))
        else:
            back.add(vmid)
    # A return the operator asked for is not held by cooldowns; other drains stay in force.
    home_rule = NodeAffinityRule(f"return to {node}", GuestSelector(vmids=frozenset(back)), ((node, 1),),
                                 f"pvebalance undrain {node}")
    cycle = run_cycle(client, promql, config, {}, at=at, fallback_to_live=True, drained=state.drained - {node},
                      extra_rules=RuleSet(node_affinity=(home_rule,)) if back else None)
    moves = tuple(m for m in cycle.plan.moves if m.vmid in back and m.target == node and m.kind is MoveKind.MANDATORY)
    without_home = replace(cycle.rules, node_affinity=tuple(r for r in cycle.rules.node_affinity if r is not home_rule))
    for vmid in sorted(back - {m.vmid for m in moves}):
        staying.append(Skipped(vmid, inventory.guest(vmid).name,  # type: ignore[union-attr]  # in `back`
                               _why_not_back(vmid, node, cycle, without_home, config)))
    plan = replace(cycle.plan, moves=moves, skipped=tuple(staying))
    # The re-check before each return sees the rules without the return's own: it may not break any.
    report = make_executor(without_home, plan).apply(plan, cycle.model) if moves else None
    if not dry_run:
        state.end(node)
    log.info("undrain.done", node=node, moves=len(moves), staying=len(staying), dry_run=dry_run)
    return DrainResult(node, plan, report, tuple(staying))


def _remembering_origins(on_event: EventSink, state: DrainState, node: str, at: float) -> EventSink:
    """`on_event` that first writes down, durably, that a guest is leaving `node` as its migration
    starts: a drain killed halfway still knows where the guests that already left came from."""

    def sink(event: Mapping[str, Any]) -> None:
        if event["event"] == "started":
            state.left(node, int(event["vmid"]), at)
        on_event(event)

    return sink


def _known_node(node: str, inventory: Inventory, verb: str) -> Node:
    found = inventory.node(node)
    if found is None:
        raise ConfigError(f"{verb}: no node {node!r} in the cluster (nodes: {', '.join(n.name for n in inventory.nodes)})")
    return found


def _planner_reason(vmid: int, cycle: Cycle) -> str | None:
    """Why the plan leaves `vmid` where it is, in the planner's words."""
    skipped = next((s.reason for s in cycle.plan.skipped if s.vmid == vmid), None)
    return skipped or next((p for p in cycle.plan.problems if p.startswith(f"guest {vmid} ")), None)


def _why_not_back(vmid: int, node: str, cycle: Cycle, rules: RuleSet, config: Config) -> str:
    """Why `vmid` does not return: the first problem a direct return would have (room, a rule)
    in the validator's words, else the planner's reason."""
    guest = cycle.observation.inventory.guest(vmid)
    assert guest is not None  # `back` holds only guests the inventory has
    usage = cycle.model.guest_usage[vmid]
    move = Move(vmid, guest.name, guest.type, guest.node, node, "return", usage.mem_bytes, usage.cpu_cores, 0.0)
    problems = check_moves(cycle.model, rules, config.policy, [move])
    if problems:
        return "not returned: " + problems[0].split(": ", 1)[-1]
    reason = _planner_reason(vmid, cycle)
    return f"not returned: {reason or 'the planner found no safe order for it (another guest would have to move first)'}"
