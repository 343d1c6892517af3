"""What every strategy works on: the state, the resolved constraints, the policy and the moves so far.

`commit` is the one way to add a move and the one gate that admits it: it asks the budget
(for every move that is not mandatory), then updates node totals, rule bookkeeping and the
per-node resident lists together, so later strategies see the cluster as it will be.
"""

from __future__ import annotations

from collections.abc import Sequence

from .budget import Budget, Charge
from .constraints import Constraints
from .model import Cause, Move, MoveKind, Why
from .placement import NodeState, Placement
from .policy import GIB, Policy
from .report import reason

# A stopped guest migrates by moving its config (and nothing else on shared storage).
OFFLINE_MIGRATION_SECONDS = 5.0


class Context:
    def __init__(self, state: Placement, constraints: Constraints, policy: Policy) -> None:
        self.state = state
        self.constraints = constraints
        self.policy = policy
        self.budget = Budget(policy)
        self.moves: list[Move] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        # Why balancing stopped, apart from the notes: a plan rebuilt from this one's placement
        # (refined, pruned, one migration per guest) states its own reason instead.
        self.stopped: str | None = None
        self.refused: set[str] = set()  # budget limits that refused a move: the notes name them
        self.balancing = False  # the balance strategy ran (imbalance above the trigger or a node hot)
        self.hot_at_start = frozenset(n.name for n in state.active if state.hot(n))
        self._costs: dict[int, float] = {}
        self.residents: dict[str, set[int]] = {name: set() for name in state.nodes}
        for vmid, node in state.where.items():
            if node in self.residents:
                self.residents[node].add(vmid)

    # --- facts about one guest ------------------------------------------------------------

    def movable(self, vmid: int) -> bool:
        return vmid not in self.constraints.skip_reason

    def running(self, vmid: int) -> bool:
        return self.state.demand[vmid].vcpus > 0

    def est_seconds(self, vmid: int, source: str, target: str) -> float:
        guest = self.constraints.guests[vmid]
        if not self.running(vmid):
            return OFFLINE_MIGRATION_SECONDS
        if guest.type == "lxc":
            return self.policy.container_restart_seconds
        return round(self.copy_bytes(vmid) / self.policy.estimate_bandwidth(source, target) + 1.0, 1)

    def copy_bytes(self, vmid: int) -> int:
        """What migrating the guest copies: its memory while running, its local disks when allowed."""
        local = self.state.local_disks.get(vmid, 0) if self.policy.allow_local_disks else 0
        return self.state.demand[vmid].mem + local

    def cost(self, vmid: int) -> float:
        """The extra load difference a balancing move of this guest must bridge (see Policy)."""
        cost = self._costs.get(vmid)
        if cost is None:
            if not self.running(vmid):
                cost = 0.0
            elif self.constraints.guests[vmid].type == "lxc":
                cost = self.policy.container_restart_cost
            else:
                cost = self.policy.cost_per_gib * self.copy_bytes(vmid) / GIB
            self._costs[vmid] = cost
        return cost

    # --- the budget -----------------------------------------------------------------------

    def charge(self, vmid: int, source: str, target: str, relief: bool = False) -> Charge:
        """What moving `vmid` from `source` to `target` costs (timed as the move shows it, with both
        nodes' bwlimits); a relief move (cause relief) is not counted per node."""
        return Charge(self.copy_bytes(vmid), self.est_seconds(vmid, source, target), counted_per_node=not relief)

    def refusal(self, vmid: int, target: str, relief: bool = False) -> str | None:
        """The budget limit a balancing move of `vmid` to `target` would cross, or None."""
        source = self.state.where[vmid]
        return self.budget.refusal(self.charge(vmid, source, target, relief), source, target)

    def admits(self, steps: Sequence[tuple[int, str]]) -> bool:
        """Whether the budget takes all these balancing moves, made in this order."""
        taken: list[tuple[Charge, str, str]] = []
        where = dict((v, self.state.where[v]) for v, _ in steps)
        ok = True
        for vmid, target in steps:
            charge = self.charge(vmid, where[vmid], target)
            why = self.budget.refusal(charge, where[vmid], target)
            if why is not None:
                self.refused.add(why)
                ok = False
                break
            self.budget.spend(charge, where[vmid], target)
            taken.append((charge, where[vmid], target))
            where[vmid] = target
        for charge, source, target in taken:
            self.budget.spend(charge, source, target, -1)
        return ok

    # --- targets --------------------------------------------------------------------------

    def feasible(self, vmid: int, target: NodeState, mandatory: bool) -> bool:
        return (
            target.name != self.state.where[vmid]
            and self.constraints.rules_allow(vmid, target.name, mandatory)
            and self.state.fits(vmid, target)
            and (mandatory or self.state.below_high_water(vmid, target))
        )

    def best_target(self, vmid: int, mandatory: bool = True) -> NodeState | None:
        """The feasible target that leaves the lowest imbalance (ties: lower load, then name)."""
        best: tuple[float, float, str] | None = None
        choice = None
        for target in self.state.nodes.values():
            if not self.feasible(vmid, target, mandatory):
                continue
            after = self.state.imbalance_if_moved(vmid, target)
            key = (round(after, 12), target.load, target.name)
            if best is None or key < best:
                best, choice = key, target
        return choice

    def make_room(self, vmid: int) -> NodeState | None:
        """Place a guest no node has room for by first moving one smaller guest off a target.

        Tries each target the rules allow, lowest load first, and the smallest resident guest
        whose departure makes the guest fit and that itself has somewhere to go.
        """
        where = self.state.where[vmid]
        targets = sorted(
            (t for t in self.state.nodes.values()
             if t.name != where and self.constraints.rules_allow(vmid, t.name, True)),
            key=lambda t: (t.load, t.name),
        )
        for target in targets:
            blockers = sorted(
                (v for v in self.residents[target.name] if self.movable(v) and self.running(v)),
                key=lambda v: (self.state.demand[v].mem, v),
            )
            for blocker in blockers:
                d = self.state.demand[blocker]
                if not self.state.fits(vmid, target, freed_mem=d.mem, freed_vcpus=d.vcpus):
                    continue
                elsewhere = self.best_target(blocker, mandatory=True)
                if elsewhere is None or elsewhere.name == where:
                    continue
                self.commit(blocker, elsewhere.name, Why(Cause.MAKES_ROOM, {"node": target.name, "for": vmid}))
                return target
        return None

    # --- committing -----------------------------------------------------------------------

    def commit(self, vmid: int, target: str, why: Why) -> Move | None:
        """Admit and make one move; None when the budget refuses it (never a mandatory one)."""
        source = self.state.where[vmid]
        charge = self.charge(vmid, source, target, relief=why.cause is Cause.RELIEF)
        if why.cause.kind is not MoveKind.MANDATORY:
            refused = self.budget.refusal(charge, source, target)
            if refused is not None:
                self.refused.add(refused)
                return None
            self.budget.spend(charge, source, target)
        guest = self.constraints.guests[vmid]
        before = self.state.imbalance()
        demand = self.state.demand[vmid]
        self.shift(vmid, target)
        move = Move(
            vmid=vmid,
            name=guest.name,
            type=guest.type,
            source=source,
            target=target,
            reason=reason(why.cause, why.details),
            mem_bytes=demand.mem,
            cpu_cores=round(demand.cpu, 3),
            est_seconds=self.est_seconds(vmid, source, target),
            gain=round(before - self.state.imbalance(), 6),
            usage_source=self.state.source[vmid],
            cause=why.cause,
            details=dict(why.details),
            copy_bytes=charge.copy_bytes,
        )
        self.moves.append(move)
        return move

    def shift(self, vmid: int, target: str) -> None:
        """Put a guest on `target` in every piece of bookkeeping, without recording a move."""
        source = self.state.where[vmid]
        self.state.move(vmid, target)
        self.constraints.moved(vmid, target)
        self.residents[source].discard(vmid)
        self.residents[target].add(vmid)

    def place(self, vmid: int, why: Why) -> bool:
        """Mandatory placement: the best feasible target, else make room; a problem if neither."""
        target = self.best_target(vmid, mandatory=True)
        if target is not None:
            self.commit(vmid, target.name, why)
            return True
        target = self.make_room(vmid)
        if target is not None and self.feasible(vmid, target, mandatory=True):
            self.commit(vmid, target.name, why)
            return True
        self.problems.append(f"guest {vmid} ({self.constraints.guests[vmid].name}) must move "
                             f"({reason(why.cause, why.details)}) but {self._why_stuck(vmid)}")
        return False

    def _why_stuck(self, vmid: int) -> str:
        allowed = [t.name for t in self.state.nodes.values()
                   if t.name != self.state.where[vmid] and self.constraints.rules_allow(vmid, t.name, True)]
        if not allowed:
            return "the rules allow no online node outside maintenance for it"
        d = self.state.demand[vmid]
        return (f"none of the nodes the rules allow ({', '.join(allowed)}) has room for its "
                f"{d.mem / GIB:.1f} GiB and {d.vcpus:g} vCPUs within the headroom and overcommit limits")
