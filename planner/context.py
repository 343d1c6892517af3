"""What every strategy works on: the state, the resolved rules, the policy and the moves so far.

`commit` is the one way to add a move: it updates node totals, rule bookkeeping and the
per-node resident lists together, so later strategies see the cluster as it will be.
"""

from __future__ import annotations

from .constraints import Constraints
from .model import Move, MoveKind
from .placement import ClusterState, NodeState
from .policy import GIB, Policy

# A stopped guest migrates by moving its config (and nothing else on shared storage).
OFFLINE_MIGRATION_SECONDS = 5.0


class Context:
    def __init__(self, state: ClusterState, rules: Constraints, policy: Policy) -> None:
        self.state = state
        self.rules = rules
        self.policy = policy
        self.moves: list[Move] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        # balancing moves the budget still allows when balancing stopped for want of a move
        # worth its cost: refinement may use them (see refine)
        self.spare_moves = 0
        self._costs: dict[int, float] = {}
        self.residents: dict[str, set[int]] = {name: set() for name in state.nodes}
        for vmid, node in state.where.items():
            if node in self.residents:
                self.residents[node].add(vmid)

    # --- facts about one guest ------------------------------------------------------------

    def movable(self, vmid: int) -> bool:
        return vmid not in self.rules.skip_reason

    def running(self, vmid: int) -> bool:
        return self.state.demand[vmid].vcpus > 0

    def est_seconds(self, vmid: int, source: str, target: str) -> float:
        guest = self.rules.guests[vmid]
        if not self.running(vmid):
            return OFFLINE_MIGRATION_SECONDS
        if guest.type == "lxc":
            return self.policy.container_restart_seconds
        return round(self.state.demand[vmid].mem / self.policy.estimate_bandwidth(source, target) + 1.0, 1)

    def cost(self, vmid: int) -> float:
        """The extra load difference a balancing move of this guest must bridge (see Policy)."""
        cost = self._costs.get(vmid)
        if cost is None:
            if not self.running(vmid):
                cost = 0.0
            elif self.rules.guests[vmid].type == "lxc":
                cost = self.policy.container_restart_cost
            else:
                cost = self.policy.cost_per_gib * self.state.demand[vmid].mem / GIB
            self._costs[vmid] = cost
        return cost

    # --- targets --------------------------------------------------------------------------

    def feasible(self, vmid: int, target: NodeState, mandatory: bool) -> bool:
        return (
            target.name != self.state.where[vmid]
            and self.rules.rules_allow(vmid, target.name, mandatory)
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

    def make_room(self, vmid: int, reason: str) -> NodeState | None:
        """Place a guest no node has room for by first moving one smaller guest off a target.

        Tries each target the rules allow, lowest load first, and the smallest resident guest
        whose departure makes the guest fit and that itself has somewhere to go.
        """
        where = self.state.where[vmid]
        targets = sorted(
            (t for t in self.state.nodes.values() if t.name != where and self.rules.rules_allow(vmid, t.name, True)),
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
                self.commit(blocker, elsewhere.name, MoveKind.MANDATORY, f"makes room on {target.name} for {vmid} ({reason})")
                return target
        return None

    # --- committing -----------------------------------------------------------------------

    def commit(self, vmid: int, target: str, kind: MoveKind, reason: str) -> Move:
        guest = self.rules.guests[vmid]
        source = self.state.where[vmid]
        before = self.state.imbalance()
        demand = self.state.demand[vmid]
        self.shift(vmid, target)
        move = Move(
            vmid=vmid,
            name=guest.name,
            type=guest.type,
            source=source,
            target=target,
            kind=kind,
            reason=reason,
            mem_bytes=demand.mem,
            cpu_cores=round(demand.cpu, 3),
            est_seconds=self.est_seconds(vmid, source, target),
            gain=round(before - self.state.imbalance(), 6),
            usage_source=self.state.source[vmid],
        )
        self.moves.append(move)
        return move

    def shift(self, vmid: int, target: str) -> None:
        """Put a guest on `target` in every piece of bookkeeping, without recording a move."""
        source = self.state.where[vmid]
        self.state.move(vmid, target)
        self.rules.moved(vmid, target)
        self.residents[source].discard(vmid)
        self.residents[target].add(vmid)

    def place(self, vmid: int, reason: str) -> bool:
        """Mandatory placement: the best feasible target, else make room; a problem if neither."""
        target = self.best_target(vmid, mandatory=True)
        if target is not None:
            self.commit(vmid, target.name, MoveKind.MANDATORY, reason)
            return True
        target = self.make_room(vmid, reason)
        if target is not None and self.feasible(vmid, target, mandatory=True):
            self.commit(vmid, target.name, MoveKind.MANDATORY, reason)
            return True
        self.problems.append(f"guest {vmid} ({self.rules.guests[vmid].name}) must move ({reason}) but {self._why_stuck(vmid)}")
        return False

    def _why_stuck(self, vmid: int) -> str:
        allowed = [t.name for t in self.state.nodes.values()
                   if t.name != self.state.where[vmid] and self.rules.rules_allow(vmid, t.name, True)]
        if not allowed:
            return "the rules allow no online node outside maintenance for it"
        d = self.state.demand[vmid]
        return (f"none of the nodes the rules allow ({', '.join(allowed)}) has room for its "
                f"{d.mem / GIB:.1f} GiB and {d.vcpus:g} vCPUs within the headroom and overcommit limits")
