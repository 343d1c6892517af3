"""Every suggestion checked, in the model's order, from the current placement, by the same
step checker that validates our own plans (`planner.verify.check_moves`).

A suggestion is taken when the checker finds nothing wrong with the accepted moves plus it and
the move lowers the imbalance (or repairs a broken hard rule, or leaves a maintenance node).
A rejected suggestion changes nothing: the next one is checked from the placement the
accepted ones leave. The accepted moves make the AI plan, a normal `Plan` (the JSON of
`planner.report` and `apply --plan FILE`). Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from planner.constraints import Constraints
from planner.context import Context
from planner.model import Cause, ClusterModel, Move, Plan, Why
from planner.placement import Placement, imbalance
from planner.policy import Policy
from planner.rules import RuleSet
from planner.strategies.balance import loads
from planner.strategies.repair import repair_reason
from planner.verify import check_moves

from .answer import Suggestion

AI_REASON_PREFIX = "AI: "


@dataclass(frozen=True)
class Rejection:
    position: int  # 1-based, in the model's answer
    vmid: str
    target: str
    reason: str  # the model's
    why: str  # ours: what the checker found
    category: str  # metrics label: unknown_guest, unknown_node, own_node, duplicate, over_limit,
    # not_movable, cooldown, api_refuses, memory, cpu_overcommit, rule, no_gain


@dataclass(frozen=True)
class Checked:
    plan: Plan  # the valid suggestions as a plan, with our figures
    rejected: tuple[Rejection, ...]


def check_suggestions(
    model: ClusterModel,
    rules: RuleSet,
    policy: Policy,
    suggestions: Sequence[Suggestion],
    max_suggestions: int,
    refused: Mapping[tuple[int, str], str] | None = None,
) -> Checked:
    """`refused`: (vmid, target) pairs the Proxmox API's migrate precondition refuses, and why."""
    refused = refused or {}
    base = _context(model, rules, policy)
    nodes = {n.name for n in model.nodes}
    accepted: list[tuple[int, str, str]] = []  # (vmid, target, reason) replayed for every check
    moves: list[Move] = []
    rejected: list[Rejection] = []
    seen: dict[int, int] = {}
    for position, s in enumerate(suggestions, 1):
        def reject(why: str, category: str, position: int = position, s: Suggestion = s) -> None:
            rejected.append(Rejection(position, s.raw_vmid, s.target, s.reason, why, category))

        if position > max_suggestions:
            reject(f"over ai.max_suggestions ({max_suggestions}); not checked", "over_limit")
        elif s.vmid is None or s.vmid not in base.constraints.guests:
            reject(f"no guest {s.raw_vmid} in the cluster", "unknown_guest")
        elif s.vmid in seen:
            reject(f"guest {s.vmid} was already suggested at #{seen[s.vmid]}; one move per guest", "duplicate")
        elif s.target not in nodes:
            reject(f"no node {s.target!r} in the cluster", "unknown_node")
        elif s.target == base.constraints.guests[s.vmid].node:
            reject(f"guest {s.vmid} already runs on {s.target}", "own_node")
        elif s.vmid in base.constraints.skip_reason:
            why = base.constraints.skip_reason[s.vmid]
            reject(f"guest {s.vmid} must not be moved: {why}", "cooldown" if "cooldown" in why else "not_movable")
        elif (s.vmid, s.target) in refused:
            reject(f"Proxmox refuses it: {refused[(s.vmid, s.target)]}", "api_refuses")
        else:
            seen[s.vmid] = position
            trial = _context(model, rules, policy)
            for vmid, target, reason in accepted:
                _commit(trial, vmid, target, reason)
            repair = repair_reason(trial, s.vmid, s.target)  # what it repairs, in the planner's own terms
            move = _commit(trial, s.vmid, s.target, AI_REASON_PREFIX + (s.reason or "no reason given"))
            if move is None:
                reject(f"over the plan's budgets: {'; '.join(sorted(trial.refused))}", "budget")
                continue
            problems = check_moves(model, rules, policy, [*moves, move])
            if problems:
                why = "; ".join(_without_step(p) for p in problems)
                reject(why, _category(why))
            elif move.gain <= 0 and repair is None:
                reject(f"does not lower the imbalance (it would change by {-move.gain:+.4f})", "no_gain")
            else:
                accepted.append((s.vmid, s.target, move.reason))
                # A repair is listed as one (mandatory); the reason stays the model's words.
                moves.append(move if repair is None else replace(move, cause=repair.cause, details=dict(repair.details)))
    final = _context(model, rules, policy)
    for vmid, target, reason in accepted:
        _commit(final, vmid, target, reason)
    return Checked(_plan(model, base, final, moves), tuple(rejected))


def _commit(ctx: Context, vmid: int, target: str, reason: str) -> Move | None:
    """The suggestion through the planner's one gate, with the model's own words as its reason
    (the details are the planner's own figures for a balancing move)."""
    state = ctx.state
    source, dest = state.nodes[state.where[vmid]], state.nodes[target]
    details = loads(source, dest, state.imbalance(), state.imbalance_if_moved(vmid, dest))
    move = ctx.commit(vmid, target, Why(Cause.BALANCE, details))
    return None if move is None else replace(move, reason=reason)


def _context(model: ClusterModel, rules: RuleSet, policy: Policy) -> Context:
    """The planner's own bookkeeping (node totals, rule groups) on the observed cluster."""
    constraints = Constraints(model, rules, policy)
    return Context(Placement(model, policy, constraints.maintenance, constraints.reservations), constraints, policy)


def _plan(model: ClusterModel, before: Context, after: Context, moves: list[Move]) -> Plan:
    nodes_before, nodes_after = before.state.snapshot(), after.state.snapshot()
    return Plan(
        moves=tuple(moves),
        nodes_before=nodes_before,
        nodes_after=nodes_after,
        imbalance_before=round(imbalance([n.load for n in nodes_before if n.state == "online"]), 6),
        imbalance_after=round(imbalance([n.load for n in nodes_after if n.state == "online"]), 6),
        sources=dict(sorted(Counter(u.source for u in model.guest_usage.values()).items())),
        window=model.window,
    )


def _without_step(problem: str) -> str:
    """check_moves names the step (`step 2 (101 pve1 -> pve4): ...`); the rejection names the suggestion."""
    head, sep, rest = problem.partition(": ")
    return rest if sep and (head.startswith("step ") or head == "end of plan") else problem


def _category(why: str) -> str:
    if "GiB, above its limit" in why:
        return "memory"
    if "overcommit limit" in why:
        return "cpu_overcommit"
    return "rule"
