"""Refinement of the balancing moves by local search, for clusters small enough to afford it.

Greedy balancing takes the best move of each round; the best *set* of k moves can differ.
`improve` works on the final placement: it takes back one balancing move at a time and puts
the best single move (any guest, any target) in its place when that lowers the imbalance,
until nothing improves. `sequence` then replays the mandatory moves and orders the new
balancing moves so that every step is feasible; when no such order is found the greedy plan
stands.
"""

from __future__ import annotations

from collections import Counter

from ..model import Move, MoveKind
from .balance import describe
from .context import Context

MAX_PAIRS = 5_000  # guests x online nodes above which refinement is skipped (greedy is kept)
MAX_ROUNDS = 10
MAX_PAIR_WORK = 2_000_000  # (single-move options)^2 x (moves)^2 above which pairs are not tried
EPSILON = 1e-9


def improve(ctx: Context, origin: dict[int, str]) -> dict[int, str] | None:
    """A better final node for the balancing guests, or None. `ctx` holds the greedy plan's
    final state (it is left changed); `origin` is where every guest started."""
    balance = [m for m in ctx.moves if m.kind is MoveKind.BALANCE]
    moved = [m.vmid for m in balance]
    if not balance or len(set(moved)) != len(moved):  # staged swaps move a guest twice: keep them
        return None
    if len(ctx.state.where) * len(ctx.state.active) > MAX_PAIRS:
        return None
    fixed = {m.vmid for m in ctx.moves if m.kind is MoveKind.MANDATORY}
    counts = Counter(n for m in ctx.moves for n in (m.source, m.target))
    start = ctx.state.imbalance()
    chosen = list(moved)
    for _ in range(MAX_ROUNDS):
        changed = _one_exchange(ctx, origin, fixed, chosen, counts)
        changed = _two_exchange(ctx, origin, fixed, chosen, counts) or changed
        if not changed:
            break
    if ctx.state.imbalance() >= start - EPSILON:
        return None
    return {vmid: ctx.state.where[vmid] for vmid in chosen}


def _one_exchange(ctx: Context, origin: dict[int, str], fixed: set[int], chosen: list[int], counts: Counter[str]) -> bool:
    """Replace single balancing moves by better ones; True when anything changed."""
    changed = False
    for index, vmid in enumerate(chosen):
        target = ctx.state.where[vmid]
        ctx.shift(vmid, origin[vmid])
        counts.subtract((origin[vmid], target))
        state = ctx.state
        redo = state.imbalance_if_moved(vmid, state.nodes[target])
        scored = [(state.imbalance_if_moved(v, state.nodes[t]), v, t) for v, t in _options(ctx, origin, fixed, set(chosen) - {vmid}, counts)]
        after, other, node = min(scored, default=(redo, vmid, target))
        if after >= redo - EPSILON:
            other, node = vmid, target
        ctx.shift(other, node)
        counts.update((origin[other], node))
        chosen[index] = other
        changed = changed or (other, node) != (vmid, target)
    return changed


def _two_exchange(ctx: Context, origin: dict[int, str], fixed: set[int], chosen: list[int], counts: Counter[str]) -> bool:
    """Replace pairs of balancing moves by the best pair, when the search space is small."""
    changed = False
    for i in range(len(chosen)):
        for j in range(i + 1, len(chosen)):
            a, b = chosen[i], chosen[j]
            ta, tb = ctx.state.where[a], ctx.state.where[b]
            redo_from = ctx.state.imbalance()
            for vmid, target in ((a, ta), (b, tb)):
                ctx.shift(vmid, origin[vmid])
                counts.subtract((origin[vmid], target))
            taken = set(chosen) - {a, b}
            options = _options(ctx, origin, fixed, taken, counts)
            if len(options) ** 2 * len(chosen) ** 2 > MAX_PAIR_WORK:
                for vmid, target in ((a, ta), (b, tb)):
                    ctx.shift(vmid, target)
                    counts.update((origin[vmid], target))
                return changed
            best = _best_pair(ctx, options, counts, redo_from - EPSILON)
            picks = best if best is not None else ((a, ta), (b, tb))
            for vmid, target in picks:
                ctx.shift(vmid, target)
                counts.update((origin[vmid], target))
            if best is not None:
                chosen[i], chosen[j] = picks[0][0], picks[1][0]
                changed = True
    return changed


def _options(
    ctx: Context, origin: dict[int, str], fixed: set[int], taken: set[int], counts: Counter[str]
) -> list[tuple[int, str]]:
    """Every single balancing move allowed in the current state (guest not moved yet)."""
    state, policy = ctx.state, ctx.policy
    found = []
    for source in state.active:
        for vmid in sorted(ctx.residents[source.name]):
            if vmid in fixed or vmid in taken or state.where[vmid] != origin[vmid]:
                continue
            if not ctx.movable(vmid) or not ctx.running(vmid):
                continue
            margin = policy.min_gain + ctx.cost(vmid)
            for target in state.active:
                if target is source or source.load - target.load < margin:
                    continue
                if max(counts[source.name], counts[target.name]) + 1 > policy.max_moves_per_node:
                    continue
                if ctx.feasible(vmid, target, mandatory=False):
                    found.append((vmid, target.name))
    return found


def _best_pair(
    ctx: Context, options: list[tuple[int, str]], counts: Counter[str], bound: float
) -> tuple[tuple[int, str], tuple[int, str]] | None:
    """The pair of moves (both feasible in turn) with the lowest imbalance below `bound`."""
    state = ctx.state
    deltas = [state.move_changes(vmid, state.nodes[target]) for vmid, target in options]
    scored = []
    for x in range(len(options)):
        for y in range(x + 1, len(options)):
            if options[x][0] == options[y][0]:
                continue
            change: dict[str, float] = {}
            nodes = {}
            for node, delta in (*deltas[x], *deltas[y]):
                change[node.name] = change.get(node.name, 0.0) + delta
                nodes[node.name] = node
            after = state.imbalance_after((nodes[n], d) for n, d in change.items())
            if after < bound:
                scored.append((after, x, y))
    for after, x, y in sorted(scored):
        first, second = options[x], options[y]
        if _pair_fits(ctx, first, second, counts):
            return first, second
    return None


def _pair_fits(ctx: Context, first: tuple[int, str], second: tuple[int, str], counts: Counter[str]) -> bool:
    """Both moves feasible one after the other (in either order), within the node budgets."""
    touched = Counter((ctx.state.where[first[0]], first[1], ctx.state.where[second[0]], second[1]))
    if any(counts[n] + c > ctx.policy.max_moves_per_node for n, c in touched.items()):
        return False
    for one, two in ((first, second), (second, first)):
        home = ctx.state.where[one[0]]
        ctx.shift(*one)
        ok = ctx.feasible(two[0], ctx.state.nodes[two[1]], mandatory=False)
        ctx.shift(one[0], home)
        if ok:
            return True
    return False


def sequence(ctx: Context, final: dict[int, str]) -> list[Move] | None:
    """Commit balancing moves reaching `final`, in an order where every step is feasible."""
    pending = dict(sorted(final.items()))
    made: list[Move] = []
    while pending:
        for vmid, target in pending.items():
            node = ctx.state.nodes[target]
            if ctx.feasible(vmid, node, mandatory=False):
                source = ctx.state.nodes[ctx.state.where[vmid]]
                current = ctx.state.imbalance()
                after = ctx.state.imbalance_if_moved(vmid, node)
                made.append(ctx.commit(vmid, target, MoveKind.BALANCE, describe(source, node, current, after)))
                del pending[vmid]
                break
        else:
            return None
    return made
