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

from ..model import MoveKind
from ..placement import NodeState
from ..context import Context

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
    if hot:
        ctx.notes.append(f"above a high-water mark: {', '.join(hot)}")
    made = sum(m.kind is MoveKind.BALANCE for m in ctx.moves)  # soft-rule repairs share the budget
    while made < policy.max_moves:
        current = state.imbalance()
        if current <= 0 or (current <= policy.stop_below and not any(state.hot(n) for n in state.active)):
            ctx.notes.append(f"balancing stopped: imbalance {current:.3f} is at or below {policy.stop_below:g}")
            return
        if _best_move(ctx, current):
            made += 1
            continue
        swapped = _best_swap(ctx, current, policy.max_moves - made) if policy.max_moves - made >= 2 else 0
        if swapped:
            made += swapped
            continue
        ctx.spare_moves = policy.max_moves - made
        full = sorted(n.name for n in state.active if n.moves >= policy.max_moves_per_node)
        ctx.notes.append(
            f"balancing stopped: no further move is worth its cost (imbalance {current:.3f})"
            + (f"; {', '.join(full)} reached max_moves_per_node" if full else "")
        )
        return
    ctx.notes.append(f"balancing stopped: move budget of {policy.max_moves} spent")


def _open_nodes(ctx: Context, room: int = 1) -> list[NodeState]:
    return [n for n in ctx.state.active if n.moves + room <= ctx.policy.max_moves_per_node]


def _sources(ctx: Context, nodes: list[NodeState], limit: int) -> list[NodeState]:
    state = ctx.state
    mean = state.s1 / len(state.active)
    ranked = sorted(nodes, key=lambda n: (not state.hot(n), -n.load, n.name))
    return [n for n in ranked if n.load > mean or state.hot(n)][:limit]


def _candidates(ctx: Context, node: NodeState) -> list[int]:
    """Movable running guests, those that stall most first (ties with an equal gain go to them)."""
    return sorted((v for v in ctx.residents[node.name] if ctx.movable(v) and ctx.running(v)),
                  key=lambda v: (-ctx.state.stall.get(v, 0.0), v))


def _best_move(ctx: Context, current: float) -> bool:
    state, policy = ctx.state, ctx.policy
    nodes = _open_nodes(ctx)
    targets = sorted(nodes, key=lambda n: (n.load, n.name))[:TARGETS]
    s1, s2 = state.s1, state.s2
    # The imbalance grows with S2 / S1^2 (for a fixed node count): compare that, and take the
    # square root only once for the winner. Start from today's value: a move must improve it.
    best_q = s2 / (s1 * s1) if s1 > 0 else 0.0
    best: tuple[int, NodeState, NodeState] | None = None
    for source in _sources(ctx, nodes, SOURCES):
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
                best_q, best = q, (vmid, source, target)
    if best is None:
        return False
    vmid, source, target = best
    after = state.imbalance_if_moved(vmid, target)
    if after >= current:
        return False
    ctx.commit(vmid, target.name, MoveKind.BALANCE, describe(source, target, current, after))
    return True


def _best_swap(ctx: Context, current: float, budget: int) -> int:
    """Two guests trade places when neither fits alone; ordered (or staged through a third
    node) so that no node is ever over its limits. Returns the number of moves made."""
    state, policy = ctx.state, ctx.policy
    nodes = _open_nodes(ctx, room=2)
    targets = sorted(nodes, key=lambda n: (n.load, n.name))[:SWAP_TARGETS]
    best_after = current
    best: tuple[list[tuple[int, str, str]], NodeState, NodeState, float] | None = None
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
                    steps = _swap_order(ctx, a, b, source, target, budget)
                    # a staged swap moves `b` twice: it must pay for that too
                    if steps is None or (len(steps) == 3 and source.load - target.load < margin + ctx.cost(b)):
                        continue
                    best_after, best = after, (steps, source, target, after)
    if best is None:
        return 0
    steps, source, target, after = best
    reason = describe(source, target, current, after)
    for vmid, node, why in steps:
        ctx.commit(vmid, node, MoveKind.BALANCE, why.format(reason=reason))
    return len(steps)


def _swap_allowed(ctx: Context, a: int, b: int, source: NodeState, target: NodeState) -> bool:
    """The end state of the swap: rules hold, hard limits hold, targets stay below high water."""
    state, rules = ctx.state, ctx.rules
    da, db = state.demand[a], state.demand[b]
    return (
        rules.rules_allow(a, target.name, False)
        and rules.rules_allow(b, source.name, False)
        and state.fits(a, target, db.mem, db.vcpus)
        and state.fits(b, source, da.mem, da.vcpus)
        and state.below_high_water(a, target, db.cpu, db.mem)
    )


def _swap_order(
    ctx: Context, a: int, b: int, source: NodeState, target: NodeState, budget: int
) -> list[tuple[int, str, str]] | None:
    """The order of moves that keeps every step within hard limits, or None."""
    state = ctx.state
    there = f"{{reason}} (swap with {b})"
    back = f"swap with {a}: {{reason}}"
    if state.fits(a, target):
        return [(a, target.name, there), (b, source.name, back)]
    if state.fits(b, source):
        return [(b, source.name, back), (a, target.name, there)]
    if budget < 3:
        return None
    # Neither node can take its newcomer first: park `b` on a third node, then trade.
    for stage in sorted(_open_nodes(ctx, room=2), key=lambda n: (n.load, n.name)):
        if stage is not source and stage is not target and ctx.feasible(b, stage, mandatory=True):
            parks = f"parks {b} on {stage.name} so {a} and {b} can trade places"
            return [(b, stage.name, parks), (a, target.name, there), (b, source.name, back)]
    return None


def describe(source: NodeState, target: NodeState, current: float, after: float) -> str:
    return (
        f"{source.name} load {source.load:.0%} -> {target.name} load {target.load:.0%}; "
        f"imbalance {current:.3f} -> {after:.3f}"
    )
