"""The planner: a pure function from what was observed, the rules and the policy to a plan.

No I/O, no clock, no globals: the same input always gives the same plan. Mandatory moves
(maintenance evacuation, repairs of broken hard rules) come first, then balancing moves;
every move is checked against the state all earlier moves leave behind and admitted by the
one budget (planner.budget, asked by `Context.commit`). The local search (planner.search)
may then find a better final placement, and `prune` drops every balancing move, pair or
trade whose removal would not make the plan worse by more than its cost. A guest greedy moves
twice goes straight to where it ends when an order allows (`_direct`).
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
from .strategies.balance import resume, stopped_note

_DIRECT_ROUNDS = 4  # resumed balancing may move a guest twice again; each round removes some


def plan(model: ClusterModel, rules: RuleSet, policy: Policy) -> Plan:
    """Plan moves for `model`. Tag rules (ignore, exclude_*, plb_*) are read from the guests
    here; pass the config and HA rules in `rules`."""
    origin = {g.vmid: g.node for g in model.guests}
    ctx = _start(model, rules, policy)
    before = ctx.state.snapshot()
    ctx = _greedy(model, rules, policy, origin, ctx)
    # `improve` searches on the greedy plan's final state; when it finds something better the
    # plan is rebuilt from the observed cluster so every step is committed (and checked) in order.
    greedy, was = ctx, ctx.state.imbalance()
    better, tried = search.improve(ctx, origin)
    refined = next((c for c in (_refined(model, rules, policy, final, greedy, was) for final in better)
                    if c is not None), None)
    # The search walks greedy's own state and leaves it where it ended (away from greedy's
    # moves) once it has tried anything: greedy's plan is then made again, pruned, and the
    # refined plan is kept only when it is still better after its own pruning.
    again = _greedy(model, rules, policy, origin, _start(model, rules, policy)) if tried else greedy
    plain = _pruned(model, rules, policy, again, origin)
    ctx = plain
    if refined is not None:
        refined = _pruned(model, rules, policy, refined, origin)
        if (round(refined.state.imbalance(), 9), len(refined.moves)) < (round(plain.state.imbalance(), 9), len(plain.moves)):
            ctx = refined
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
        notes=tuple(constraints.compatibility_notes() + ctx.notes + ([ctx.stopped] if ctx.stopped else [])),
        search=policy.search,
        search_rounds=tried,
    )


def _start(model: ClusterModel, rules: RuleSet, policy: Policy) -> Context:
    constraints = Constraints(model, rules, policy)
    return Context(Placement(model, policy, constraints.maintenance, constraints.reservations), constraints, policy)


def _greedy(model: ClusterModel, rules: RuleSet, policy: Policy, origin: dict[int, str], ctx: Context) -> Context:
    """The strategies' plan from the fresh `ctx`, with one migration per guest where an order
    allows (`_direct`)."""
    for strategy in STRATEGIES:
        strategy(ctx)
    return _direct(model, rules, policy, ctx, origin)


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
    ctx.notes.extend(greedy.notes)
    ctx.notes.append(f"plan refined by local search: imbalance {was:.3f} -> {ctx.state.imbalance():.3f} "
                     f"with {len(ctx.moves)} moves (greedy: {len(greedy.moves)})")
    if greedy.stopped:  # greedy's reason describes greedy's end, not this plan's
        ctx.refused |= greedy.refused
        ctx.stopped = stopped_note(ctx, ctx.state.imbalance())
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
    final plan worse by more than its cost, replaying the rest from the observed cluster.

    Worse is measured as S2 / S1^2 of the online node loads (for a fixed node count the CRS
    imbalance grows with it, whatever the node sizes). With S1 fixed, moving load d across a
    load gap g lowers S2 by 2d(g - d); greedy makes a move only across a gap of at least
    `min_gain` plus its cost (Context.cost, in load points), which lowers S2 by at least
    2d(min_gain + cost - d). A unit earns its place when leaving it out raises S2 / S1^2 by
    more than that sum over its guests (and at all), so the test means the same on 3 nodes as
    on 64, and a pair that cancels out never passes it.
    Each pass leaves out every such unit at once (one replay, so a plan of thousands of moves
    stays cheap) when together they still gain no more than they cost, else the first alone."""
    while True:
        final = _spread(ctx)
        home = _homes(ctx, origin)
        weak: list[tuple[frozenset[int], float]] = []  # unit, what it must gain
        taken: set[int] = set()
        for unit in _units(ctx.moves):
            if unit & taken:
                continue
            due = _due(ctx, unit)
            if _spread_without(ctx, unit, home) - final <= due:
                weak.append((unit, due))
                taken |= unit
        if not weak:
            return ctx
        if len(weak) > 1 and _spread_without(ctx, frozenset(taken), home) - final > sum(d for _, d in weak):
            weak, taken = weak[:1], set(weak[0][0])  # together they earn their place: the first only
        kept = {v: (home[v] if v in taken else n) for v, n in ctx.state.where.items()}
        placement = {v: n for v, n in kept.items() if n != origin[v]}  # what is left to move
        pruned = _replay(model, rules, policy, placement, ctx)
        if pruned is None:
            return ctx
        pruned.problems.extend(ctx.problems)
        pruned.notes.extend(ctx.notes)
        pruned.stopped = ctx.stopped
        pruned.notes.append(f"left out the move(s) of {', '.join(map(str, sorted(taken)))}: they gain less than "
                            f"their cost (imbalance {pruned.state.imbalance():.4f} without, "
                            f"{ctx.state.imbalance():.4f} with)")
        ctx = pruned


def _direct(model: ClusterModel, rules: RuleSet, policy: Policy, ctx: Context, origin: dict[int, str]) -> Context:
    """The plan with one migration per guest when some guest moves more than once (made room
    with, then balanced on; evacuated, then balanced on) and the replay finds an order of single
    moves to the same placement: each extra live migration copies the guest's memory again for
    nothing. Budget the extra moves spent goes back to balancing, which resumes from there. A
    staged swap (parked on a third node) has no such order and keeps its moves."""
    for _ in range(_DIRECT_ROUNDS):
        moves = Counter(m.vmid for m in ctx.moves)
        twice = sorted(v for v, n in moves.items() if n > 1)
        if not twice:
            return ctx
        direct = _replay(model, rules, policy, {v: n for v, n in ctx.state.where.items() if n != origin[v]}, ctx)
        if direct is None or len(direct.moves) >= len(ctx.moves):
            return ctx
        direct.problems.extend(ctx.problems)
        direct.notes.extend(ctx.notes)
        direct.notes.append(f"one migration each for {', '.join(map(str, twice))}: greedy moved them twice, "
                            "the plan takes them straight to where they end")
        if ctx.stopped:  # balancing ran: it goes on with what the saved moves left of the budget
            resume(direct)
        ctx = direct
    return ctx


def _homes(ctx: Context, origin: dict[int, str]) -> dict[int, str]:
    """Where each guest stays when its balancing moves are left out: where its moves that are
    never left out (mandatory, soft rule) take it, else where it is in the observed cluster. A
    guest evacuated and then balanced on keeps its evacuation."""
    home = dict(origin)
    for m in ctx.moves:
        if m.kind is MoveKind.MANDATORY or m.cause is Cause.SOFT_RULE:
            home[m.vmid] = m.target
    return home


def _spread(ctx: Context) -> float:
    """S2 / S1^2 of the online node loads."""
    s1 = ctx.state.s1
    return ctx.state.s2 / (s1 * s1) if s1 > 0 else 0.0


def _due(ctx: Context, unit: frozenset[int]) -> float:
    """What the unit must lower S2 / S1^2 by: 2d(min_gain + cost - d) / S1^2 summed over its guests, at least 0."""
    state, margin = ctx.state, ctx.policy.min_gain
    s1 = state.s1 if state.s1 > 0 else 1.0
    due = 0.0
    for v in unit:
        d = state.contribution(v, state.nodes[state.where[v]])
        due += 2 * d * (margin + ctx.cost(v) - d)
    return max(0.0, due) / (s1 * s1)


def _spread_without(ctx: Context, unit: frozenset[int], home: dict[int, str]) -> float:
    """S2 / S1^2 if the guests of `unit` stayed home (`_homes`; the state is put back)."""
    undo = [(v, ctx.state.where[v]) for v in sorted(unit)]
    for v in sorted(unit):
        ctx.shift(v, home[v])
    without = _spread(ctx)
    for v, there in undo:
        ctx.shift(v, there)
    return without
