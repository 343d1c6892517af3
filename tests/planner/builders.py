"""Small helpers to build ClusterModels by hand: the planner's input is pure data."""

from __future__ import annotations

from collections.abc import Iterable

from planner.framework import plan
from planner.model import ClusterModel, Plan, Usage
from planner.policy import Policy
from planner.rules import RuleSet
from planner.verify import verify_plan
from pveapi.inventory import Guest, GuestType, Node

GIB = 1024**3


def node(name: str, cpus: int = 16, mem_gib: int = 64, online: bool = True, hastate: str | None = None) -> Node:
    return Node(name=name, online=online, maxcpu=cpus, maxmem=mem_gib * GIB, hastate=hastate)


def guest(
    vmid: int,
    on: str,
    cpu: float = 1.0,
    mem_gib: float = 4.0,
    *,
    type: GuestType = "qemu",
    status: str = "running",
    tags: Iterable[str] = (),
    pool: str | None = None,
    lock: str | None = None,
    template: bool = False,
    vcpus: float = 4,
    hastate: str | None = None,
) -> tuple[Guest, Usage]:
    """A guest and its demand: `cpu` cores used and `mem_gib` memory used."""
    g = Guest(
        vmid=vmid, type=type, name=f"g{vmid}", node=on, status=status, maxcpu=vcpus,
        maxmem=int(max(mem_gib, 1) * GIB * 2), cpu=cpu / vcpus, mem=int(mem_gib * GIB), template=template,
        tags=frozenset(tags), pool=pool, lock=lock, hastate=hastate,
    )
    return g, Usage(cpu_cores=cpu, mem_bytes=int(mem_gib * GIB), source="prometheus")


def cluster(
    nodes: Iterable[Node],
    guests: Iterable[tuple[Guest, Usage]],
    *,
    maintenance: Iterable[str] = (),
    pinned_local: Iterable[int] = (),
    overhead_gib: float = 0.0,
) -> ClusterModel:
    """A model whose node totals are the sum of their running guests plus `overhead_gib` each."""
    nodes = tuple(nodes)
    pairs = list(guests)
    node_usage = {}
    for n in nodes:
        if not n.online:
            continue
        here = [u for g, u in pairs if g.node == n.name and g.status != "stopped"]
        node_usage[n.name] = Usage(
            cpu_cores=sum(u.cpu_cores for u in here),
            mem_bytes=sum(u.mem_bytes for u in here) + int(overhead_gib * GIB),
            source="prometheus",
        )
    return ClusterModel(
        nodes=nodes,
        guests=tuple(sorted((g for g, _ in pairs), key=lambda g: g.vmid)),
        guest_usage={g.vmid: u for g, u in pairs},
        node_usage=node_usage,
        maintenance=frozenset(maintenance),
        pinned_local=frozenset(pinned_local),
    )


def checked_plan(model: ClusterModel, rules: RuleSet | None = None, policy: Policy | None = None) -> Plan:
    """Plan, and fail unless the independent checker accepts every step."""
    rules = rules or RuleSet()
    policy = policy or Policy()
    result = plan(model, rules, policy)
    assert verify_plan(model, rules, policy, result) == []
    return result


def placement_after(model: ClusterModel, result: Plan) -> dict[int, str]:
    where = {g.vmid: g.node for g in model.guests}
    for move in result.moves:
        where[move.vmid] = move.target
    return where
