"""Where every guest is and what each node carries, updated move by move in O(1).

The planner works on one `Placement`; the imbalance is kept as running sums so a candidate
move is scored without touching the other nodes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pveapi.inventory import Guest, Node

from .model import ClusterModel, NodeLoad, UsageSource
from .policy import Policy


def imbalance(loads: Sequence[float]) -> float:
    """Proxmox CRS imbalance: coefficient of variation of node loads divided by its maximum
    sqrt(N-1), so 0 is perfectly even and 1 is all load on one node."""
    return imbalance_from_sums(sum(loads), sum(x * x for x in loads), len(loads))


def imbalance_from_sums(s1: float, s2: float, n: int) -> float:
    if n < 2 or s1 <= 0:
        return 0.0
    mean = s1 / n
    variance = max(0.0, s2 / n - mean * mean)
    return min(1.0, math.sqrt(variance) / mean / math.sqrt(n - 1))


def consumes(guest: Guest) -> bool:
    """A stopped guest uses no CPU or memory; running and paused ones hold their memory."""
    return guest.status != "stopped"


@dataclass(frozen=True)
class Demand:
    cpu: float  # cores
    mem: int  # bytes
    vcpus: float  # configured vCPUs while running (for the overcommit ratio)


def demand_of(guest: Guest, model: ClusterModel) -> Demand:
    if not consumes(guest):
        return Demand(0.0, 0, 0.0)
    usage = model.guest_usage.get(guest.vmid)
    cpu = usage.cpu_cores if usage else guest.cpu_cores_used
    mem = usage.mem_bytes if usage else guest.mem
    return Demand(max(0.0, cpu), max(0, mem), guest.maxcpu)


@dataclass(frozen=True)
class Limits:
    """What a node may carry. `mem` and `vcpus` are hard; the high-water marks bind balancing only."""

    mem: int
    vcpus: float
    cpu_high: float  # cores
    mem_high: int

    @classmethod
    def of(cls, node: Node, policy: Policy, reserved_cpu: float = 0.0, reserved_mem: int = 0) -> Limits:
        return cls(
            mem=node.maxmem - policy.headroom_for(node.name).reserved(node.maxmem) - reserved_mem,
            vcpus=policy.cpu_overcommit * node.maxcpu,
            cpu_high=policy.cpu_high_water * node.maxcpu - reserved_cpu,
            mem_high=int(policy.memory_high_water * node.maxmem) - reserved_mem,
        )


class NodeState:
    __slots__ = ("name", "maxcpu", "maxmem", "state", "cpu", "mem", "vcpus", "limits", "load", "kc", "km")

    def __init__(
        self, node: Node, state: str, limits: Limits, cpu_weight: float, mem_weight: float, stall_factor: float = 1.0
    ) -> None:
        self.name = node.name
        self.maxcpu = node.maxcpu
        self.maxmem = node.maxmem
        self.state = state
        self.cpu = 0.0
        self.mem = 0
        self.vcpus = 0.0
        self.limits = limits
        # load = kc * cpu + km * mem: the weights folded with the node's size (and its stall) once.
        # A stalling node's stall scales with what it carries, so each guest there weighs more,
        # leaving relieves it, and arriving costs more.
        total = cpu_weight + mem_weight
        self.kc = stall_factor * cpu_weight / total / node.maxcpu if node.maxcpu else 0.0
        self.km = stall_factor * mem_weight / total / node.maxmem if node.maxmem else 0.0
        self.load = 0.0

    def refresh(self) -> None:
        self.load = self.kc * self.cpu + self.km * self.mem

    def snapshot(self) -> NodeLoad:
        return NodeLoad(self.name, self.cpu, self.maxcpu, self.mem, self.maxmem, self.load, self.state, self.vcpus)


class Placement:
    """Node totals and the running sums behind the imbalance. Only `online` nodes count."""

    def __init__(
        self,
        model: ClusterModel,
        policy: Policy,
        maintenance: frozenset[str],
        reservations: Mapping[str, tuple[float, int]],
    ) -> None:
        self.nodes: dict[str, NodeState] = {}
        for node in sorted(model.nodes, key=lambda n: n.name):
            state = "offline" if not node.online else "maintenance" if node.name in maintenance else "online"
            cpu_r, mem_r = reservations.get(node.name, (0.0, 0))
            stall = 1.0 + policy.pressure_weight * model.node_pressure.get(node.name, 0.0)
            self.nodes[node.name] = NodeState(
                node, state, Limits.of(node, policy, cpu_r, mem_r), policy.cpu_weight, policy.memory_weight, stall
            )
        # vmid order makes the float sums (and so the plan) independent of the input order
        guests = sorted(model.guests, key=lambda g: g.vmid)
        self.demand: dict[int, Demand] = {g.vmid: demand_of(g, model) for g in guests}
        self.where: dict[int, str] = {g.vmid: g.node for g in guests}
        # disks a migration copies too, for the guests with local disks (see Policy.allow_local_disks)
        self.local_disks: dict[int, int] = {g.vmid: g.maxdisk for g in guests if g.vmid in model.pinned_local}
        # Each guest's own stall, only when pressure counts: balancing moves the guests that stall most first.
        self.stall: Mapping[int, float] = model.guest_pressure if policy.pressure_weight > 0 else {}
        self.source: dict[int, UsageSource] = {
            g.vmid: model.guest_usage[g.vmid].source if g.vmid in model.guest_usage else "live" for g in guests
        }
        for guest in guests:
            node_state = self.nodes.get(guest.node)
            if node_state is not None:
                d = self.demand[guest.vmid]
                node_state.cpu += d.cpu
                node_state.mem += d.mem
                node_state.vcpus += d.vcpus
        for name, node_state in self.nodes.items():
            # The measured node total includes the host's own use; keep that overhead on top of the guests.
            measured = model.node_usage.get(name)
            if measured is not None and node_state.state != "offline":
                node_state.cpu = max(node_state.cpu, measured.cpu_cores)
                node_state.mem = max(node_state.mem, measured.mem_bytes)
            node_state.refresh()
        self.active = [n for n in self.nodes.values() if n.state == "online"]
        self.s1 = sum(n.load for n in self.active)
        self.s2 = sum(n.load * n.load for n in self.active)

    def imbalance(self) -> float:
        return imbalance_from_sums(self.s1, self.s2, len(self.active))

    def contribution(self, vmid: int, node: NodeState) -> float:
        d = self.demand[vmid]
        return node.kc * d.cpu + node.km * d.mem

    def imbalance_after(self, changes: Iterable[tuple[NodeState, float]]) -> float:
        """The imbalance if each listed node's load changed by the given amount (nodes listed once)."""
        s1, s2 = self.s1, self.s2
        for node, delta in changes:
            if node.state == "online":
                new = node.load + delta
                s1 += delta
                s2 += new * new - node.load * node.load
        return imbalance_from_sums(s1, s2, len(self.active))

    def imbalance_if_moved(self, vmid: int, target: NodeState) -> float:
        """The imbalance if `vmid` moved from where it is to `target` (nothing is changed)."""
        source = self.nodes[self.where[vmid]]
        return self.imbalance_after(((source, -self.contribution(vmid, source)), (target, self.contribution(vmid, target))))

    def fits(self, vmid: int, target: NodeState, freed_mem: int = 0, freed_vcpus: float = 0.0) -> bool:
        """Hard limits on the target after the guest arrives (optionally after others left it).
        A guest that brings nothing (a stopped one) always fits: it cannot take a node over."""
        d = self.demand[vmid]
        return (
            (d.mem == 0 or target.mem - freed_mem + d.mem <= target.limits.mem)
            and (d.vcpus == 0 or target.vcpus - freed_vcpus + d.vcpus <= target.limits.vcpus)
        )

    def below_high_water(self, vmid: int, target: NodeState, freed_cpu: float = 0.0, freed_mem: int = 0) -> bool:
        d = self.demand[vmid]
        return (
            target.cpu - freed_cpu + d.cpu <= target.limits.cpu_high
            and target.mem - freed_mem + d.mem <= target.limits.mem_high
        )

    def hot(self, node: NodeState) -> bool:
        return node.cpu > node.limits.cpu_high or node.mem > node.limits.mem_high

    def move(self, vmid: int, target: str) -> None:
        source = self.nodes[self.where[vmid]]
        dest = self.nodes[target]
        d = self.demand[vmid]
        for node, sign in ((source, -1), (dest, 1)):
            old = node.load
            node.cpu += sign * d.cpu
            node.mem += sign * d.mem
            node.vcpus += sign * d.vcpus
            node.refresh()
            if node.state == "online":
                self.s1 += node.load - old
                self.s2 += node.load * node.load - old * old
        self.where[vmid] = target

    def snapshot(self) -> tuple[NodeLoad, ...]:
        return tuple(n.snapshot() for n in self.nodes.values())
