"""Refinement by local search on the final placement, for clusters small enough to afford it.

Greedy takes the best move of each round and repairs rules one guest at a time; the best
*set* of moves can differ: another member of an anti-affinity group may be the better one to
move, a repair may have a better target, two guests may do better by trading places.
`improve` starts from the greedy plan's final placement and runs a tabu search over it: each
round makes the best change (move one guest to any node or back home, or let two guests
trade nodes) that keeps every limit, every budget, and every rule at least as satisfied as
greedy left it, even when that change is worse, and forbids undoing it for a few rounds, so
the search walks out of the dead ends where plain descent stops. It is then restarted a few
times from the best placement through a different first change ("kicks"). All of this runs
once per tenure (how long the way back is forbidden): different tenures walk into different
placements. The best placements seen are kept. Deterministic: ties go to the lower VMID and node name.

`sequence` then replays a placement from the observed cluster: repairs of hard rules first
(mandatory, after a "makes room" move when a repair needs one), soft-rule repairs next,
balancing moves last, best first, each step feasible when it is made. The planner tries the
kept placements best first; when none has such an order within the budget, the greedy plan
stands.
"""

from __future__ import annotations

import heapq
from collections import Counter

from .model import Move, MoveKind
from .placement import NodeState
from .strategies.balance import describe
from .context import Context
from .strategies.repair import repair_reason
from .strategies.soft import soft_reason

MAX_PAIRS = 5_000  # guests x online nodes above which refinement is skipped (greedy is kept)
MAX_SWAP_GUESTS = 120  # candidates above which trading places is not tried (pairs grow as the square)
MAX_EXCHANGE_PAIRS = 600  # guests x online nodes above which planned moves are not exchanged for others
WORK = 25_000  # guests x online nodes x rounds, per pass: small clusters search longest
MAX_ROUNDS = 600
PATIENCE = 60  # rounds without a new best placement after which the search stops
KICKS = 6  # searches restarted from the best placement through a different first change
KEEP = 8  # placements handed to `sequence`, best first, until one has a feasible order
TENURES = (7, 9)  # rounds a guest may not go back to the node it just left, one pass each
MAX_CHECKED = 400  # changes checked against the rules per round, best first
EPSILON = 1e-9

Change = tuple[tuple[int, str], ...]  # (guest, node it goes to), applied in order


class _Search:
    """The bookkeeping of one search: budgets and the rule levels greedy reached."""

    def __init__(self, ctx: Context, origin: dict[int, str]) -> None:
        self.ctx = ctx
        self.origin = origin
        state, rules = ctx.state, ctx.rules
        self.max_moved = len(ctx.moves) + ctx.spare_moves
        self.per_node = ctx.policy.max_moves_per_node
        self.counts: Counter[str] = Counter()
        for vmid, home in origin.items():
            if state.where[vmid] != home:
                self.counts.update((home, state.where[vmid]))
        self.moved = sum(1 for v, home in origin.items() if state.where[v] != home)
        self.kind = {id(g): False for g in rules.apart} | {id(g): True for g in rules.together}
        self.level = {id(g): g.violation(self.kind[id(g)]) for g in (*rules.apart, *rules.together)}
        self.off_preferred = {v for v in rules.preferred if not self._on_preferred(v)}
        self.guests = sorted(
            v for v in state.where
            if ctx.movable(v) and ctx.running(v) and state.nodes[state.where[v]].state == "online"
        )
        self.start = state.imbalance()
        # placements better than greedy's seen on the way, with their imbalance: the best may
        # have no feasible order of moves, the next ones are tried then
        self.found: dict[frozenset[tuple[int, str]], float] = {}
        self.kicked: set[Change] = set()
        self.rounds_left = 0
        self.tenure = TENURES[0]
        self.nodes = list(state.active)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        # each guest's load on each node: the scoring below is plain arithmetic on these
        self.share = {v: [state.contribution(v, n) for n in self.nodes] for v in self.guests}
        # the nodes strict node affinity lets each guest run on, to leave the rest unscored
        self.may = {v: frozenset(i for i, n in enumerate(self.nodes)
                                 if v not in rules.allowed or n.name in rules.allowed[v]) for v in self.guests}

    def _on_preferred(self, vmid: int) -> bool:
        preferred = self.ctx.rules.preferred.get(vmid)
        return preferred is None or self.ctx.state.where[vmid] in preferred

    # --- scoring --------------------------------------------------------------------------

    def changes(self) -> list[tuple[float, Change]]:
        """Every move of one guest, every trade of places (up to MAX_SWAP_GUESTS guests) and
        every exchange of one planned move for another, within the move budget, best first.
        Scored by S2 / S1^2 of the node loads: for a fixed node count the imbalance grows with it."""
        state, nodes, origin = self.ctx.state, self.nodes, self.origin
        loads = [n.load for n in nodes]
        at = {v: self.index[state.where[v]] for v in self.guests}
        room = self.max_moved - self.moved
        found = [(score, ((v, nodes[t].name),))
                 for score, v, t in self._relocations(loads, state.s1, state.s2, at, room)]
        if len(self.guests) <= MAX_SWAP_GUESTS:
            for i, v in enumerate(self.guests):
                a, sv = at[v], self.share[v]
                for w in self.guests[i + 1:]:
                    b, sw = at[w], self.share[w]
                    if a == b or b not in self.may[v] or a not in self.may[w]:
                        continue
                    extra = (nodes[b].name != origin[v]) + (nodes[a].name != origin[w])
                    if extra - (nodes[a].name != origin[v]) - (nodes[b].name != origin[w]) > room:
                        continue
                    la, lb = loads[a] - sv[a] + sw[a], loads[b] - sw[b] + sv[b]
                    t1 = state.s1 + la - loads[a] + lb - loads[b]
                    t2 = state.s2 + la * la - loads[a] * loads[a] + lb * lb - loads[b] * loads[b]
                    found.append((t2 / (t1 * t1), ((v, nodes[b].name), (w, nodes[a].name))))
        # Take one planned move back and make another: scored on the loads after the take-back.
        for v in self.guests if len(self.guests) * len(nodes) <= MAX_EXCHANGE_PAIRS else ():
            home = self.index.get(origin[v])
            if home is None or home == at[v]:
                continue
            a, sv = at[v], self.share[v]
            after = list(loads)
            after[a] -= sv[a]
            after[home] += sv[home]
            s1 = state.s1 - sv[a] + sv[home]
            s2 = state.s2 + after[a] ** 2 - loads[a] ** 2 + after[home] ** 2 - loads[home] ** 2
            back = dict(at)
            back[v] = home
            found += [(score, ((v, origin[v]), (u, nodes[t].name)))
                      for score, u, t in self._relocations(after, s1, s2, back, room + 1, fresh_only=True) if u != v]
        return found

    def _relocations(
        self, loads: list[float], s1: float, s2: float, at: dict[int, int], room: int, fresh_only: bool = False
    ) -> list[tuple[float, int, int]]:
        """(score, guest, node index) of every single move adding at most `room` moves to the
        plan (`fresh_only`: of guests that have not moved), for the given node loads."""
        nodes, origin = self.nodes, self.origin
        found = []
        for v in self.guests:
            a, share, home = at[v], self.share[v], origin[v]
            away = nodes[a].name != home
            if fresh_only and away:
                continue
            leaves = loads[a] - share[a]
            base1 = s1 - share[a]
            base2 = s2 - loads[a] * loads[a] + leaves * leaves
            may = self.may[v]
            for t, node in enumerate(nodes):
                if t == a or t not in may or (node.name != home) - away > room:
                    continue
                arrives = loads[t] + share[t]
                t1 = base1 + share[t]
                found.append(((base2 - loads[t] * loads[t] + arrives * arrives) / (t1 * t1), v, t))
        return found

    # --- applying -------------------------------------------------------------------------

    def apply(self, change: Change) -> Change | None:
        """Make the change when it keeps every limit and rule; returns its undo, or None."""
        state = self.ctx.state
        undo = tuple((vmid, state.where[vmid]) for vmid, _ in reversed(change))
        before = {n: (state.nodes[n].mem, state.nodes[n].vcpus, state.nodes[n].load, self.counts[n])
                  for v, t in change for n in (state.where[v], t)}
        self._shift(change)
        if self._allowed(change, before):
            return undo
        self._shift(undo)
        return None

    def _shift(self, change: Change) -> None:
        for vmid, target in change:
            home, was = self.origin[vmid], self.ctx.state.where[vmid]
            self.moved += (target != home) - (was != home)
            self.counts.subtract(n for n in (home, was) if was != home)
            self.counts.update(n for n in (home, target) if target != home)
            self.ctx.shift(vmid, target)

    def _allowed(self, change: Change, before: dict[str, tuple[int, float, float, int]]) -> bool:
        state, rules = self.ctx.state, self.ctx.rules
        if self.moved > self.max_moved:
            return False
        for name, (mem, vcpus, load, count) in before.items():
            node = state.nodes[name]
            if node.mem > mem and node.mem > node.limits.mem or node.vcpus > vcpus and node.vcpus > node.limits.vcpus:
                return False
            if node.load > load and state.hot(node):
                return False
            if self.counts[name] > max(self.per_node, count):
                return False
        for vmid, _ in change:
            where = state.where[vmid]
            if where not in rules.usable:
                return False
            allowed = rules.allowed.get(vmid)
            if allowed and where not in allowed and vmid not in rules.stranded:
                return False
            if vmid not in self.off_preferred and not self._on_preferred(vmid):
                return False
            for group in rules.apart_of.get(vmid, ()) + rules.together_of.get(vmid, ()):
                if group.violation(self.kind[id(group)]) > self.level[id(group)]:
                    return False
            if not self._worth_it(vmid):
                return False
        return True

    def _worth_it(self, vmid: int) -> bool:
        """A balancing move (one its guest could take back) must clear its margin, as in balance."""
        ctx, state = self.ctx, self.ctx.state
        home, where = self.origin[vmid], state.where[vmid]
        if home == where or not ctx.rules.rules_allow(vmid, home, False):  # could it go back: balancing
            return True
        source, target = state.nodes[home], state.nodes[where]
        gap = (source.load + state.contribution(vmid, source)) - (target.load - state.contribution(vmid, target))
        return gap >= ctx.policy.min_gain + ctx.cost(vmid)

    # --- searching ------------------------------------------------------------------------

    def run(self) -> None:
        """Tabu search: the best allowed change each round, even a worse one; the best placement wins."""
        state = self.ctx.state
        best, best_at, since = state.imbalance(), self.placement(), 0
        tabu: dict[tuple[int, str], int] = {}  # (guest, node) -> last round it may not go there
        n = len(self.nodes)
        round_ = -1
        while self.rounds_left > 0:
            self.rounds_left -= 1
            round_ += 1
            record = (best * best * (n - 1) + 1) / n - EPSILON  # the best imbalance, as S2 / S1^2
            # A forbidden change is allowed when it beats the best, or when nothing else is left.
            held: list[Change] = []
            undo = None
            for score, change in heapq.nsmallest(MAX_CHECKED, self.changes()):  # = sorted(...)[:MAX_CHECKED]
                if score >= record and any(tabu.get(step, -1) >= round_ for step in change):
                    held.append(change)
                elif (undo := self.apply(change)) is not None:
                    break
            else:
                undo = next((u for u in map(self.apply, held) if u is not None), None)
            if undo is None:
                break
            tabu.update((step, round_ + self.tenure) for step in undo)
            since += 1
            now = state.imbalance()
            if now < self.start - EPSILON:
                self.found.setdefault(frozenset(self.placement().items()), now)
            if now < best - EPSILON:
                best, best_at, since = now, self.placement(), 0
            elif since >= PATIENCE:
                break
        self.go_to(best_at)

    def begin(self, placement: dict[int, str], tenure: int) -> None:
        """Start a pass from `placement` with its own tenure, kicks and rounds."""
        self.go_to(placement)
        self.tenure = tenure
        self.kicked = set()
        self.rounds_left = min(MAX_ROUNDS, WORK // max(1, len(self.guests) * len(self.nodes)))

    def kick(self) -> bool:
        """Leave the best placement through the least bad change not tried from it before."""
        for _, change in sorted(self.changes()):
            if change not in self.kicked and self.apply(change) is not None:
                self.kicked.add(change)
                return True
        return False

    def placement(self) -> dict[int, str]:
        return {v: n for v, n in self.ctx.state.where.items() if n != self.origin[v]}

    def go_to(self, placement: dict[int, str]) -> None:
        for vmid in sorted(self.ctx.state.where):
            target = placement.get(vmid, self.origin[vmid])
            if self.ctx.state.where[vmid] != target:
                self._shift(((vmid, target),))


def improve(ctx: Context, origin: dict[int, str]) -> list[dict[int, str]]:
    """Final placements better than greedy's (vmid -> node, for every guest that moves), best
    first, at most KEEP. `ctx` holds the greedy plan's final state (it is left changed);
    `origin` is where every guest started."""
    if not ctx.moves and not ctx.spare_moves:
        return []
    if len(ctx.state.where) * len(ctx.state.active) > MAX_PAIRS:
        return []
    search = _Search(ctx, origin)
    greedy = search.placement()
    for tenure in TENURES:  # each tenure walks differently: one pass (search and kicks) each
        search.begin(greedy, tenure)
        search.run()
        for _ in range(KICKS):
            if not search.found:
                break
            best = min(search.found.items(), key=lambda item: (item[1], sorted(item[0])))[0]
            search.go_to(dict(best))
            if not search.kick():
                break
            search.run()
    ranked = sorted(search.found.items(), key=lambda item: (item[1], sorted(item[0])))
    return [dict(placement) for placement, _ in ranked[:KEEP]]


def sequence(ctx: Context, final: dict[int, str], reasons: dict[int, str], budget: int) -> list[Move] | None:
    """Commit moves reaching `final` from the observed cluster in `ctx`: hard-rule repairs
    first, soft-rule repairs next, balancing last; every step feasible when made. None when
    no such order is found or more than `budget` balancing moves would be needed."""
    pending = dict(sorted(final.items()))
    made: list[Move] = []
    while pending:
        step = _next_repair(ctx, pending, reasons) or _room_for_repairs(ctx, pending)
        if step is None:
            break
        made.append(step)
    if any(repair_reason(ctx, v, t) for v, t in pending.items()):
        return None  # a repair could not be made first
    while pending:
        step = _next_balancing(ctx, pending)
        if step is None:
            return None
        made.append(step)
    if sum(m.kind is MoveKind.BALANCE for m in made) > budget:
        return None
    return made


def _next_repair(ctx: Context, pending: dict[int, str], reasons: dict[int, str]) -> Move | None:
    for vmid in sorted(pending, key=lambda v: (v not in reasons, v)):
        target = pending[vmid]
        why = repair_reason(ctx, vmid, target)
        if why and ctx.feasible(vmid, ctx.state.nodes[target], mandatory=True):
            del pending[vmid]
            return ctx.commit(vmid, target, MoveKind.MANDATORY, reasons.get(vmid, why))
    return None


def _room_for_repairs(ctx: Context, pending: dict[int, str]) -> Move | None:
    """A move that is no repair itself but must come first: one a waiting repair needs room
    from, or one that turns another planned move into a repair (it clears the node an
    anti-affinity member is to take). Made as mandatory, "makes room"."""
    waiting = sorted(v for v, t in pending.items() if repair_reason(ctx, v, t))
    for vmid, target in pending.items():
        if vmid in waiting or not ctx.feasible(vmid, ctx.state.nodes[target], mandatory=True):
            continue
        source = ctx.state.where[vmid]
        ctx.shift(vmid, target)
        # Only a move that really helps a repair: one that now fits, or one that became a repair.
        enabled = ([w for w in waiting if ctx.feasible(w, ctx.state.nodes[pending[w]], mandatory=True)]
                   or [v for v, t in pending.items() if v != vmid and v not in waiting and repair_reason(ctx, v, t)])
        ctx.shift(vmid, source)
        if enabled:
            del pending[vmid]
            return ctx.commit(vmid, target, MoveKind.MANDATORY, f"makes room on {source} for {enabled[0]}")
    return None


def _next_balancing(ctx: Context, pending: dict[int, str]) -> Move | None:
    """Soft-rule repairs first, then the feasible move that lowers the imbalance most, so any
    prefix of the plan is as good as it can be."""
    state = ctx.state
    best: tuple[bool, float, int] | None = None
    for vmid, target in pending.items():
        node: NodeState = state.nodes[target]
        if ctx.feasible(vmid, node, mandatory=False):
            key = (soft_reason(ctx, vmid, target) is None, state.imbalance_if_moved(vmid, node), vmid)
            best = key if best is None or key < best else best
    if best is None:
        return None
    vmid = best[2]
    target = pending.pop(vmid)
    source, node = state.nodes[state.where[vmid]], state.nodes[target]
    why = soft_reason(ctx, vmid, target) or describe(source, node, state.imbalance(), best[1])
    return ctx.commit(vmid, target, MoveKind.BALANCE, why)
