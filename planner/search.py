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
from dataclasses import dataclass, replace

from .budget import Budget, Charge
from .context import Context
from .model import Cause, Move, MoveKind, Why
from .placement import NodeState
from .strategies.balance import loads
from .strategies.repair import repair_reason
from .strategies.soft import soft_reason


@dataclass(frozen=True)
class Effort:
    """How hard the search works (Policy.search); the figures behind each level are in bench/results/planner.md."""

    max_pairs: int  # guests x online nodes above which the search is skipped (greedy is kept)
    work: int  # guests x online nodes x rounds, per pass: small clusters search longest
    max_rounds: int
    patience: int  # rounds without a new best placement after which a pass stops
    kicks: int  # searches restarted from the best placement through a different first change
    tenures: tuple[int, ...]  # rounds a guest may not go back to the node it just left, one pass each
    tries: int  # changes tried against the limits and rules, in all: the search's work budget


EFFORTS = {
    "quick": Effort(max_pairs=5_000, work=25_000, max_rounds=600, patience=60, kicks=2, tenures=(7,), tries=6_000),
    "thorough": Effort(max_pairs=5_000, work=25_000, max_rounds=600, patience=60, kicks=6, tenures=(7, 9),
                       tries=1_000_000),
}
MAX_SWAP_GUESTS = 120  # candidates above which trading places is not tried (pairs grow as the square)
MAX_EXCHANGE_PAIRS = 600  # guests x online nodes above which planned moves are not exchanged for others
KEEP = 8  # placements handed to `sequence`, best first, until one has a feasible order
MAX_CHECKED = 400  # changes checked against the rules per round, best first
EPSILON = 1e-9

Change = tuple[tuple[int, str], ...]  # (guest, node it goes to), applied in order


class _Search:
    """The bookkeeping of one search: budgets and the rule levels greedy reached."""

    def __init__(self, ctx: Context, origin: dict[int, str], effort: Effort) -> None:
        self.ctx = ctx
        self.origin = origin
        self.effort = effort
        state, rules = ctx.state, ctx.constraints
        # The same gate as greedy's, on the placement: every guest away from home is charged.
        # What the mandatory moves spent is credited up front (no budget limits those), so the
        # search may also repair a rule with another guest than greedy did.
        # When balancing did not run, the search may place the mandatory moves better, no more.
        self.budget = Budget(ctx.policy if ctx.balancing else replace(ctx.policy, max_moves=0))
        self._charges: dict[tuple[int, str], Charge] = {}
        for m in ctx.moves:
            if m.kind is MoveKind.MANDATORY:
                self.budget.spend(self._charge(m.vmid, m.target), m.source, m.target, -1)
        for vmid, home in origin.items():
            if state.where[vmid] != home:
                self.budget.spend(self._charge(vmid, state.where[vmid]), home, state.where[vmid])
        self.tried = 0
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
        self.tenure = effort.tenures[0]
        self.nodes = list(state.active)
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        # guests no rule names: a balancing move of theirs must clear its margin (see _worth_it),
        # which is checked while scoring, before the move is tried
        named = {v for g in (*rules.apart, *rules.together) for v in g.members} | set(rules.allowed) | set(rules.preferred)
        self.margin = {v: ctx.policy.min_gain + ctx.cost(v) for v in self.guests if v not in named}
        # each guest's load on each node: the scoring below is plain arithmetic on these
        self.share = {v: [state.contribution(v, n) for n in self.nodes] for v in self.guests}
        # the nodes strict node affinity lets each guest run on, to leave the rest unscored
        self.may = {v: frozenset(i for i, n in enumerate(self.nodes)
                                 if v not in rules.allowed or n.name in rules.allowed[v]) for v in self.guests}

    def _charge(self, vmid: int, target: str) -> Charge:
        """What the guest's move from home to `target` costs (kept: asked again on every change)."""
        charge = self._charges.get((vmid, target))
        if charge is None:
            home = self.origin[vmid]
            charge = self._charges[vmid, target] = self.ctx.charge(vmid, home, target,
                                                                  relief=home in self.ctx.hot_at_start)
        return charge

    def _room(self) -> int:
        """Moves the count cap still allows (cost limits are checked when a change is applied)."""
        return self.budget.policy.max_moves - self.budget.moves

    def _on_preferred(self, vmid: int) -> bool:
        preferred = self.ctx.constraints.preferred.get(vmid)
        return preferred is None or self.ctx.state.where[vmid] in preferred

    # --- scoring --------------------------------------------------------------------------

    def changes(self) -> list[tuple[float, Change]]:
        """Every move of one guest, every trade of places (up to MAX_SWAP_GUESTS guests) and
        every exchange of one planned move for another, within the move budget, best first.
        Scored by S2 / S1^2 of the node loads: for a fixed node count the imbalance grows with it."""
        state, nodes, origin = self.ctx.state, self.nodes, self.origin
        loads = [n.load for n in nodes]
        at = {v: self.index[state.where[v]] for v in self.guests}
        room = self._room()
        found: list[tuple[float, Change]] = [(score, ((v, nodes[t].name),))
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
            margin, h = self.margin.get(v), self.index.get(home)
            # what the home node carries without the guest, plus the guest: the source side of its margin
            held = None if margin is None or h is None else loads[h] - (share[h] if a == h else 0.0) + share[h]
            for t, node in enumerate(nodes):
                if t == a or t not in may or (node.name != home) - away > room:
                    continue
                if held is not None and margin is not None and t != h and held - loads[t] < margin:
                    continue
                arrives = loads[t] + share[t]
                t1 = base1 + share[t]
                found.append(((base2 - loads[t] * loads[t] + arrives * arrives) / (t1 * t1), v, t))
        return found

    # --- applying -------------------------------------------------------------------------

    def apply(self, change: Change) -> Change | None:
        """Make the change when it keeps every limit and rule; returns its undo, or None."""
        state = self.ctx.state
        self.tried += 1
        undo = tuple((vmid, state.where[vmid]) for vmid, _ in reversed(change))
        before = {n: (state.nodes[n].mem, state.nodes[n].vcpus, state.nodes[n].load)
                  for v, t in change for n in (state.where[v], t)}
        self._shift(change)
        if self._allowed(change, before):
            return undo
        self._shift(undo)
        return None

    def _shift(self, change: Change) -> None:
        for vmid, target in change:
            home, was = self.origin[vmid], self.ctx.state.where[vmid]
            if was != home:
                self.budget.spend(self._charge(vmid, was), home, was, -1)
            if target != home:
                self.budget.spend(self._charge(vmid, target), home, target)
            self.ctx.shift(vmid, target)

    def _allowed(self, change: Change, before: dict[str, tuple[int, float, float]]) -> bool:
        state, rules = self.ctx.state, self.ctx.constraints
        if self.budget.over() is not None:
            return False
        for name, (mem, vcpus, load) in before.items():
            node = state.nodes[name]
            if node.mem > mem and node.mem > node.limits.mem or node.vcpus > vcpus and node.vcpus > node.limits.vcpus:
                return False
            if node.load > load and state.hot(node):
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
        if home == where or not ctx.constraints.rules_allow(vmid, home, False):  # could it go back: balancing
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
        while self.rounds_left > 0 and self.tried < self.effort.tries:
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
            elif since >= self.effort.patience:
                break
        self.go_to(best_at)

    def begin(self, placement: dict[int, str], tenure: int) -> None:
        """Start a pass from `placement` with its own tenure, kicks and rounds."""
        self.go_to(placement)
        self.tenure = tenure
        self.kicked = set()
        self.rounds_left = min(self.effort.max_rounds, self.effort.work // max(1, len(self.guests) * len(self.nodes)))

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


def improve(ctx: Context, origin: dict[int, str]) -> tuple[list[dict[int, str]], int]:
    """Final placements better than greedy's (vmid -> node, for every guest that moves), best
    first, at most KEEP, and the number of changes tried. `ctx` holds the greedy plan's final
    state (it is left changed); `origin` is where every guest started."""
    effort = EFFORTS.get(ctx.policy.search)
    if effort is None or not (ctx.moves or ctx.balancing):
        return [], 0
    if len(ctx.state.where) * len(ctx.state.active) > effort.max_pairs:
        return [], 0
    search = _Search(ctx, origin, effort)
    greedy = search.placement()
    for tenure in effort.tenures:  # each tenure walks differently: one pass (search and kicks) each
        search.begin(greedy, tenure)
        search.run()
        for _ in range(effort.kicks):
            if not search.found:
                break
            best = min(search.found.items(), key=lambda item: (item[1], sorted(item[0])))[0]
            search.go_to(dict(best))
            if not search.kick():
                break
            search.run()
    ranked = sorted(search.found.items(), key=lambda item: (item[1], sorted(item[0])))
    return [dict(placement) for placement, _ in ranked[:KEEP]], search.tried


def sequence(ctx: Context, final: dict[int, str], reasons: dict[int, Why]) -> list[Move] | None:
    """Commit moves reaching `final` from the observed cluster in `ctx`: hard-rule repairs
    first, soft-rule repairs next, balancing last; every step feasible when made and admitted
    by the budget. None when no such order is found."""
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
    return made


def _next_repair(ctx: Context, pending: dict[int, str], reasons: dict[int, Why]) -> Move | None:
    for vmid in sorted(pending, key=lambda v: (v not in reasons, v)):
        target = pending[vmid]
        why = repair_reason(ctx, vmid, target)
        if why and ctx.feasible(vmid, ctx.state.nodes[target], mandatory=True):
            del pending[vmid]
            return ctx.commit(vmid, target, reasons.get(vmid, why))
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
            return ctx.commit(vmid, target, Why(Cause.MAKES_ROOM, {"node": source, "for": enabled[0]}))
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
    cause = Cause.RELIEF if state.hot(source) else Cause.BALANCE
    why = soft_reason(ctx, vmid, target) or Why(cause, loads(source, node, state.imbalance(), best[1]))
    return ctx.commit(vmid, target, why)
