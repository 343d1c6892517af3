"""The planner: a pure function from what was observed, the rules and the policy to a plan.

No I/O, no clock, no globals: the same input always gives the same plan. Mandatory moves
(maintenance evacuation, repairs of broken hard rules) come first, then balancing moves;
every move is checked against the state all earlier moves leave behind and admitted by the
one budget (planner.budget, asked by `Context.commit`). The local search (planner.search)
may then find a better final placement, and `prune` drops every balancing move, pair or
trade whose removal would not make the plan worse by more than its cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from . import search
from .constraints import Constraints
from .context import Context
from .model import Cause, ClusterModel, Move, MoveKind, Plan, Skipped, Why
from .placement import Placement, imbalance
from .policy import Policy
from .rules import RuleSet
from .strategies import STRATEGIES
from .strategies.balance import stopped_note


def plan(model: ClusterModel, rules: RuleSet, policy: Policy) -> Plan:
    """Plan moves for `model`. Tag rules (ignore, exclude_*, plb_*) are read from the guests
    here; pass the config and HA rules in `rules`."""
    ctx = _start(model, rules, policy)
    before = ctx.state.snapshot()
    _run(ctx)
    origin = {g.vmid: g.node for g in model.guests}
    # `improve` searches on the greedy plan's final state; when it finds something better the
    # plan is rebuilt from the observed cluster so every step is committed (and checked) in order.
    greedy, was = ctx, ctx.state.imbalance()
    better, tried = search.improve(ctx, origin)
    if better:
        refined = (_refined(model, rules, policy, final, greedy, was) for final in better)
        ctx = next((c for c in refined if c is not None), None) or _run(_start(model, rules, policy))
    ctx = _pruned(model, rules, policy, ctx, origin)
    constraints, state = ctx.constraints, ctx.state
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
        search=policy.search,
        search_rounds=tried,
    )


def _start(model: ClusterModel, rules: RuleSet, policy: Policy) -> Context:
    constraints = Constraints(model, rules, policy)
    return Context(Placement(model, policy, constraints.maintenance, constraints.reservations), constraints, policy)


def _run(ctx: Context) -> Context:
    for strategy in STRATEGIES:
        strategy(ctx)
    return ctx


def _replay(model: ClusterModel, rules: RuleSet, policy: Policy, final: dict[int, str], greedy: Context) -> Context | None:
    """The placement `final` reached from the observed cluster in a feasible, admitted order, or None."""
    # `greedy`'s mandatory moves keep their reasons (a makes-room move is found again where needed).
    reasons = {m.vmid: Why(m.cause, m.details) for m in greedy.moves
               if m.kind is MoveKind.MANDATORY and m.cause is not Cause.MAKES_ROOM}
    ctx = _start(model, rules, policy)
    ctx.balancing = greedy.balancing
    if search.sequence(ctx, final, reasons) is None:
        return None
    return ctx


def _refined(
    model: ClusterModel, rules: RuleSet, policy: Policy, final: dict[int, str], greedy: Context, was: float
) -> Context | None:
    """The refined placement as a plan, or None when it has no order or is not better than greedy's `was`."""
    ctx = _replay(model, rules, policy, final, greedy)
    if ctx is None or ctx.state.imbalance() >= was:
        return None
    ctx.problems.extend(greedy.problems)
    # Why greedy's balancing stopped describes greedy's end, not this plan's: the next note does.
    ctx.notes.extend(n for n in greedy.notes if not n.startswith("balancing stopped"))
    ctx.notes.append(f"plan refined by local search: imbalance {was:.3f} -> {ctx.state.imbalance():.3f} "
                     f"with {len(ctx.moves)} moves (greedy: {len(greedy.moves)})")
    if any(n.startswith("balancing stopped") for n in greedy.notes):
        ctx.refused |= greedy.refused
        ctx.notes.append(stopped_note(ctx, ctx.state.imbalance()))
    return ctx


def _units(moves: list[Move]) -> Iterator[frozenset[int]]:
    """Balancing moves that can go on their own: single moves, opposite pairs, whole trades."""
    free = [m for m in moves if m.kind is MoveKind.BALANCE and m.cause is not Cause.SOFT_RULE]
    trades: dict[tuple[object, ...], set[int]] = {}
    for m in free:
        if m.cause is Cause.TRADE:
            trades.setdefault(tuple(sorted(m.details.items())), set()).add(m.vmid)
        else:
            yield frozenset({m.vmid})
    yield from (frozenset(t) for t in trades.values())
    singles = [m for m in free if m.cause is not Cause.TRADE]
    for i, a in enumerate(singles):
        for b in singles[i + 1:]:
            if (a.source, a.target) == (b.target, b.source):
                yield frozenset({a.vmid, b.vmid})


def _pruned(model: ClusterModel, rules: RuleSet, policy: Policy, ctx: Context, origin: dict[int, str]) -> Context:
    """Drop every balancing move (or opposite pair, or trade) whose removal does not make the
    final imbalance worse by more than its cost, replaying the rest from the observed cluster.

    A move's cost (Context.cost) is in load points of the node pair it runs between; in
    imbalance points it is spread over the online nodes, which is what it is divided by here.
    Each pass leaves out every such unit at once (one replay, so a plan of thousands of moves
    stays cheap) when together they still cost more than they gain, else the first alone."""
    nodes = max(1, len(ctx.state.active))
    while True:
        final = ctx.state.imbalance()
        weak: list[tuple[frozenset[int], float, float]] = []  # unit, its cost, imbalance without it
        taken: set[int] = set()
        for unit in _units(ctx.moves):
            if unit & taken:
                continue
            cost = sum(ctx.cost(v) for v in unit) / nodes
            without = _imbalance_without(ctx, unit, origin)
            if without - final <= cost:
                weak.append((unit, cost, without))
                taken |= unit
        if not weak:
            return ctx
        together = frozenset(taken)
        if len(weak) > 1 and _imbalance_without(ctx, together, origin) - final > sum(c for _, c, _ in weak):
            weak = weak[:1]  # together they gain more than they cost: leave out the first only
        placement = {v: n for v, n in ctx.state.where.items()
                     if n != origin[v] and not any(v in unit for unit, _, _ in weak)}
        pruned = _replay(model, rules, policy, placement, ctx)
        if pruned is None:
            return ctx
        pruned.problems.extend(ctx.problems)
        pruned.notes.extend(ctx.notes)
        left_out = sorted(v for unit, _, _ in weak for v in unit)
        pruned.notes.append(f"left out the move(s) of {', '.join(map(str, left_out))}: the plan gains less than "
                            f"their cost from them (imbalance {pruned.state.imbalance():.3f} without, {final:.3f} with)")
        ctx = pruned


def _imbalance_without(ctx: Context, unit: frozenset[int], origin: dict[int, str]) -> float:
    """The final imbalance if the guests of `unit` stayed home (the state is put back)."""
    undo = [(v, ctx.state.where[v]) for v in sorted(unit)]
    for v in sorted(unit):
        ctx.shift(v, origin[v])
    without = ctx.state.imbalance()
    for v, there in undo:
        ctx.shift(v, there)
    return without
