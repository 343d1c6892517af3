"""The planner: a pure function from what was observed, the rules and the policy to a plan.

No I/O, no clock, no globals: the same input always gives the same plan. Mandatory moves
(maintenance evacuation, repairs of broken hard rules) come first, then balancing moves;
every move is checked against the state all earlier moves leave behind.
"""

from __future__ import annotations

from collections import Counter

from .constraints import Constraints
from .model import ClusterModel, MoveKind, Plan, Skipped
from .placement import ClusterState, imbalance
from .policy import Policy
from .rules import RuleSet
from . import search
from .context import Context
from .strategies import STRATEGIES


def plan(model: ClusterModel, rules: RuleSet, policy: Policy) -> Plan:
    """Plan moves for `model`. Tag rules (ignore, exclude_*, plb_*) are read from the guests
    here; pass the config and HA rules in `rules`."""
    ctx = _start(model, rules, policy)
    before = ctx.state.snapshot()
    _run(ctx)
    # `improve` searches on the greedy plan's final state; when it finds something better the
    # plan is rebuilt from the observed cluster so every step is committed (and checked) in order.
    greedy, was = ctx, ctx.state.imbalance()
    better = search.improve(ctx, {g.vmid: g.node for g in model.guests})
    if better:
        refined = (_refined(model, rules, policy, final, greedy, was) for final in better)
        ctx = next((c for c in refined if c is not None), None) or _run(_start(model, rules, policy))
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
        notes=tuple(constraints.notes + ctx.notes),
    )


def _start(model: ClusterModel, rules: RuleSet, policy: Policy) -> Context:
    constraints = Constraints(model, rules, policy)
    return Context(ClusterState(model, policy, constraints.maintenance, constraints.reservations), constraints, policy)


def _run(ctx: Context) -> Context:
    for strategy in STRATEGIES:
        strategy(ctx)
    return ctx


def _refined(
    model: ClusterModel, rules: RuleSet, policy: Policy, final: dict[int, str], greedy: Context, was: float
) -> Context | None:
    """The refined placement reached from the observed cluster in a feasible order, or None
    when there is no such order within the budget or it is not better than greedy's `was`."""
    # `greedy` was searched on: its moves, problems and notes are as greedy made them, its state is not.
    reasons = {m.vmid: m.reason for m in greedy.moves
               if m.kind is MoveKind.MANDATORY and not m.reason.startswith("makes room")}
    ctx = _start(model, rules, policy)
    if search.sequence(ctx, final, reasons, policy.max_moves) is None or ctx.state.imbalance() >= was:
        return None
    ctx.problems.extend(greedy.problems)
    # Why greedy's balancing stopped describes greedy's end, not this plan's: the next note does.
    ctx.notes.extend(n for n in greedy.notes if not n.startswith("balancing stopped"))
    ctx.notes.append(f"plan refined by local search: imbalance {was:.3f} -> {ctx.state.imbalance():.3f} "
                     f"with {len(ctx.moves)} moves (greedy: {len(greedy.moves)})")
    return ctx
