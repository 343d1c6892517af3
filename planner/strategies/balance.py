"""Balancing: greedy best move, then a swap when no single move fits, until the imbalance is
low enough, no move is worth its cost, or the move budget is spent.

Each round scores every movable running guest on the few most loaded nodes against the
least loaded nodes, in O(1) per pair from the running load sums, and takes the move that
lowers the imbalance most; of moves that lower it equally, that of the guest whose own stall
(PSI, with `pressure_weight` set) is highest. A move qualifies only when its source is busier
than its target by at least `min_gain` plus the move's cost (in load points), so no guest
moves between nodes that are nearly even, and a big or restarting guest needs a bigger
difference.
"""

from __future__ import annotations

from ..context import Context
from ..model import Cause, Why
from ..placement import NodeState

SOURCES = 3  # most loaded nodes whose guests are candidates each round
TARGETS = 12  # least loaded nodes tried as destinations each round
SWAP_SOURCES = 2
SWAP_TARGETS = 4
SWAP_GUESTS = 12  # guests per node tried in swaps (the largest on the source, smallest on the target)


def balance(ctx: Context) -> None:
    state, policy = ctx.state, ctx.policy
    start = state.imbalance()
    hot = sorted(n.name for n in state.active if state.hot(n))
    if start <= policy.trigger and not hot:
        ctx.notes.append(
            f"imbalance {start:.3f} is at or below the trigger {policy.trigger:g} and no node is above "
            "a high-water mark: no balancing moves"
        )
        return
    ctx.balancing = True
    if hot:
        ctx.notes.append(f"above a high-water mark: {', '.join(hot)}")
    resume(ctx)


def resume(ctx: Context) -> None:
    """Balance from where the plan stands until the imbalance is low enough, no move is worth
    its cost or the budget refuses; the note says which."""
    state, policy = ctx.state, ctx.policy
    while True:
        current = state.imbalance()
        if current <= 0 or (current <= policy.stop_below and not any(state.hot(n) for n in state.active)):
            ctx.stopped = f"balancing stopped: imbalance {current:.3f} is at or below {policy.stop_below:g}"
            return
        # Relief first: a move off a node above a high-water mark, before any plain balancing.
        if any(state.hot(n) for n in state.active) and _best_move(ctx, current, relief=True):
            continue
        if _best_move(ctx, current) or _best_swap(ctx, current):
            continue
        ctx.stopped = stopped_note(ctx, current)
        return


def stopped_note(ctx: Context, current: float) -> str:
    """Why balancing ended: the budget limits that refused moves worth making, or no such move."""
    if ctx.refused:
        return (f"balancing stopped at imbalance {current:.3f}: moves worth their cost remain, but the budget "
                f"refused them ({', '.join(sorted(ctx.refused))})")
    return f"balancing stopped: no further move is worth its cost (imbalance {current:.3f})"


def _sources(ctx: Context, nodes: list[NodeState], limit: int, relief: bool = False) -> list[NodeState]:
    state = ctx.state
    mean = state.s1 / len(state.active)
    ranked = sorted(nodes, key=lambda n: (not state.hot(n), -n.load, n.name))
    return [n for n in ranked if (state.hot(n) if relief else n.load > mean or state.hot(n))][:limit]


def _candidates(ctx: Context, node: NodeState) -> list[int]:
    """Movable running guests, those that stall most first (ties with an equal gain go to them)."""
    return sorted((v for v in ctx.residents[node.name] if ctx.movable(v) and ctx.running(v)),
                  key=lambda v: (-ctx.state.stall.get(v, 0.0), v))


def _best_move(ctx: Context, current: float, relief: bool = False) -> bool:
    state, policy = ctx.state, ctx.policy
    nodes = state.active
    targets = sorted(nodes, key=lambda n: (n.load, n.name))[:TARGETS]
    s1, s2 = state.s1, state.s2
    # The imbalance grows with S2 / S1^2 (for a fixed node count): compare that, and take the
    # square root only once for the winner. Start from today's value: a move must improve it.
    best_q = s2 / (s1 * s1) if s1 > 0 else 0.0
    best: tuple[int, NodeState, NodeState] | None = None
    for source in _sources(ctx, nodes, SOURCES, relief):
        base2 = s2 - source.load * source.load
        for vmid in _candidates(ctx, source):
            d = state.demand[vmid]
            margin = policy.min_gain + ctx.cost(vmid)
            out = source.kc * d.cpu + source.km * d.mem
            new_s = source.load - out
            rest2 = base2 + new_s * new_s
            for target in targets:  # least loaded first: once the gap is too small, so are the rest
                if source.load - target.load < margin:
                    break
                into = target.kc * d.cpu + target.km * d.mem
                new_t = target.load + into
                t1 = s1 - out + into
                q = (rest2 - target.load * target.load + new_t * new_t) / (t1 * t1)
                if q >= best_q or not ctx.feasible(vmid, target, mandatory=False):
                    continue
                refused = ctx.refusal(vmid, target.name, relief=state.hot(source))  # the next best may still fit
                if refused is not None:
                    ctx.refused.add(refused)
                    continue
                best_q, best = q, (vmid, source, target)
    if best is None:
        return False
    vmid, source, target = best
    after = state.imbalance_if_moved(vmid, target)
    if after >= current:
        return False
    cause = Cause.RELIEF if state.hot(source) else Cause.BALANCE
    return ctx.commit(vmid, target.name, Why(cause, loads(source, target, current, after))) is not None


def _best_swap(ctx: Context, current: float) -> bool:
    """Two guests trade places when neither fits alone; ordered (or staged through a third
    node) so that no node is ever over its limits. One trade, one reason for all its moves."""
    state, policy = ctx.state, ctx.policy
    nodes = state.active
    targets = sorted(nodes, key=lambda n: (n.load, n.name))[:SWAP_TARGETS]
    best_after = current
    best: tuple[list[tuple[int, str]], NodeState, NodeState, float] | None = None
    for source in _sources(ctx, nodes, SWAP_SOURCES):
        big = sorted(_candidates(ctx, source), key=lambda v: -state.contribution(v, source))[:SWAP_GUESTS]
        for target in targets:
            if target.load >= source.load:
                continue
            small = sorted(_candidates(ctx, target), key=lambda v: state.contribution(v, target))[:SWAP_GUESTS]
            for a in big:
                for b in small:
                    delta_s = state.contribution(b, source) - state.contribution(a, source)
                    delta_t = state.contribution(a, target) - state.contribution(b, target)
                    after = state.imbalance_after(((source, delta_s), (target, delta_t)))
                    margin = policy.min_gain + ctx.cost(a) + ctx.cost(b)
                    if after >= best_after or source.load - target.load < margin:
                        continue
                    if not _swap_allowed(ctx, a, b, source, target):
                        continue
                    steps = _swap_order(ctx, a, b, source, target)
                    # a staged swap moves `b` twice: it must pay for that too
                    if steps is None or (len(steps) == 3 and source.load - target.load < margin + ctx.cost(b)):
                        continue
                    if not ctx.admits(steps):
                        continue
                    best_after, best = after, (steps, source, target, after)
    if best is None:
        return False
    steps, source, target, after = best
    details: dict[str, str | int | float] = {**loads(source, target, current, after),
                                             "first": steps[-2][0], "second": steps[-1][0]}
    if len(steps) == 3:
        details.update(parked=steps[0][0], via=steps[0][1])
    if steps[-2][1] != target.name:  # the guest coming back moves first
        details.update(first=steps[-1][0], second=steps[-2][0])
    for vmid, node in steps:
        ctx.commit(vmid, node, Why(Cause.TRADE, details))
    return True


def _swap_allowed(ctx: Context, a: int, b: int, source: NodeState, target: NodeState) -> bool:
    """The end state of the swap: rules hold, hard limits hold, targets stay below high water."""
    state, rules = ctx.state, ctx.constraints
    da, db = state.demand[a], state.demand[b]
    return (
        rules.rules_allow(a, target.name, False)
        and rules.rules_allow(b, source.name, False)
        and state.fits(a, target, db.mem, db.vcpus)
        and state.fits(b, source, da.mem, da.vcpus)
        and state.below_high_water(a, target, db.cpu, db.mem)
    )


def _swap_order(ctx: Context, a: int, b: int, source: NodeState, target: NodeState) -> list[tuple[int, str]] | None:
    """The order of moves that keeps every step within hard limits, or None."""
    state = ctx.state
    if state.fits(a, target):
        return [(a, target.name), (b, source.name)]
    if state.fits(b, source):
        return [(b, source.name), (a, target.name)]
    # Neither node can take its newcomer first: park `b` on a third node, then trade.
    for stage in sorted(state.active, key=lambda n: (n.load, n.name)):
        if stage is not source and stage is not target and ctx.feasible(b, stage, mandatory=True):
            return [(b, stage.name), (a, target.name), (b, source.name)]
    return None


def loads(source: NodeState, target: NodeState, current: float, after: float) -> dict[str, str | int | float]:
    """The details of a balancing move: both nodes' loads before it, the imbalance before and after."""
    return {"source": source.name, "source_load": round(source.load, 4), "target": target.name,
            "target_load": round(target.load, 4), "before": round(current, 6), "after": round(after, 6)}
