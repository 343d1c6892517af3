"""The planner: a pure function from what was observed, the rules and the policy to a plan.

No I/O, no clock, no globals: the same input always gives the same plan. Mandatory moves
(maintenance evacuation, repairs of broken hard rules) come first, then balancing moves;
every move is checked against the state all earlier moves leave behind.
"""

from __future__ import annotations

from collections import Counter

from .constraints import Constraints
from .model import ClusterModel, Plan, Skipped
from .placement import ClusterState, imbalance
from .policy import Policy
from .rules import RuleSet
from .strategies import MANDATORY, STRATEGIES, Context, Strategy, refine


def plan(model: ClusterModel, rules: RuleSet, policy: Policy) -> Plan:
    """Plan moves for `model`. Tag rules (ignore, exclude_*, plb_*) are read from the guests
    here; pass the config and HA rules in `rules`."""
    ctx = _start(model, rules, policy)
    before = ctx.state.snapshot()
    _apply(ctx, STRATEGIES)
    greedy, notes = ctx.state.imbalance(), list(ctx.notes)
    # `improve` searches on the greedy plan's final state; when it finds something better the
    # plan is rebuilt from scratch so every step is committed (and checked) in order again.
    final = refine.improve(ctx, {g.vmid: g.node for g in model.guests})
    if final is not None:
        ctx = _refined(model, rules, policy, final, greedy, notes) or _run(model, rules, policy, STRATEGIES)
    constraints, state = ctx.rules, ctx.state
    after = state.snapshot()
    return Plan(
        moves=tuple(ctx.moves),
        nodes_before=before,
        nodes_after=after,
        imbalance_before=round(imbalance([n.load for n in before if n.state == "online"]), 6),
        imbalance_after=round(imbalance([n.load for n in after if n.state == "online"]), 6),
        skipped=tuple(
            Skipped(vmid, constraints.guests[vmid].name, reason)
            for vmid, reason in sorted(constraints.skip_reason.items())
        ),
        problems=tuple(constraints.problems + ctx.problems),
        sources=dict(sorted(Counter(u.source for u in model.guest_usage.values()).items())),
        window=model.window,
        notes=tuple(ctx.notes),
    )


def _start(model: ClusterModel, rules: RuleSet, policy: Policy) -> Context:
    constraints = Constraints(model, rules, policy)
    return Context(ClusterState(model, policy, constraints.maintenance, constraints.reservations), constraints, policy)


def _apply(ctx: Context, strategies: tuple[Strategy, ...]) -> Context:
    for strategy in strategies:
        strategy(ctx)
    return ctx


def _run(model: ClusterModel, rules: RuleSet, policy: Policy, strategies: tuple[Strategy, ...]) -> Context:
    return _apply(_start(model, rules, policy), strategies)


def _refined(
    model: ClusterModel, rules: RuleSet, policy: Policy, final: dict[int, str], greedy: float, notes: list[str]
) -> Context | None:
    """The same mandatory moves, then the refined balancing moves in a feasible order."""
    ctx = _run(model, rules, policy, MANDATORY)
    if refine.sequence(ctx, final) is None or ctx.state.imbalance() >= greedy:
        return None
    ctx.notes.extend(notes)
    ctx.notes.append(f"balancing refined by local search: imbalance {greedy:.3f} -> "
                     f"{ctx.state.imbalance():.3f} with the same number of moves")
    return ctx
