"""The independent validator: replays a plan step by step on the observed cluster and lists
every step that would break a limit or a rule.

The planner must produce plans this accepts; the executor re-runs it on fresh observations
before each migration. It deliberately recomputes node totals from scratch at every step
instead of sharing the planner's incremental bookkeeping, so a bookkeeping bug cannot hide.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .constraints import Constraints
from .model import ClusterModel, Move, Plan
from .placement import Limits, demand_of
from .policy import GIB, Policy
from .rules import RuleSet


def verify_plan(model: ClusterModel, rules: RuleSet, policy: Policy, plan: Plan) -> list[str]:
    """One line per problem, `step N: ...` or `end of plan: ...`; an empty list means every step
    is safe and the plan's figures after are what its moves make of the cluster."""
    return check_moves(model, rules, policy, plan.moves) + _after_is_what_the_moves_make(model, plan)


def _after_is_what_the_moves_make(model: ClusterModel, plan: Plan) -> list[str]:
    """Each node's memory and vCPUs after, less before, must be what its guests brought and took.

    The plan shows these figures (and the imbalance from them) as what applying it will leave;
    a plan whose moves would leave something else must not be shown or carried out.
    """
    demand = {g.vmid: demand_of(g, model) for g in model.guests}
    home = {g.vmid: g.node for g in model.guests}
    final = dict(home)
    final.update((m.vmid, m.target) for m in plan.moves if m.vmid in home)
    mem: Counter[str] = Counter()
    vcpus: Counter[str] = Counter()
    for vmid, node in final.items():
        if node != home[vmid]:
            mem.update({node: demand[vmid].mem, home[vmid]: -demand[vmid].mem})
            vcpus.update({node: demand[vmid].vcpus, home[vmid]: -demand[vmid].vcpus})
    before = {n.name: n for n in plan.nodes_before}
    errors = [f"end of plan: {name} has figures before but none after"
              for name in sorted(set(before) - {n.name for n in plan.nodes_after})]
    for after in plan.nodes_after:
        was = before.get(after.name)
        if was is None or after.mem_bytes - was.mem_bytes != mem[after.name] or abs(after.vcpus - was.vcpus - vcpus[after.name]) > 1e-6:
            errors.append(f"end of plan: {after.name} would hold {after.mem_bytes / GIB:.1f} GiB and {after.vcpus:g} vCPUs "
                          f"as the plan says, but its moves leave it "
                          f"{((was.mem_bytes if was else 0) + mem[after.name]) / GIB:.1f} GiB and "
                          f"{(was.vcpus if was else 0) + vcpus[after.name]:g} vCPUs")
    return errors


def check_moves(model: ClusterModel, rules: RuleSet, policy: Policy, moves: Sequence[Move]) -> list[str]:
    constraints = Constraints(model, rules, policy)
    demand = {g.vmid: demand_of(g, model) for g in model.guests}
    nodes = {n.name: n for n in model.nodes}
    limits = {
        n.name: Limits.of(n, policy, *constraints.reservations.get(n.name, (0.0, 0))) for n in model.nodes
    }
    where = dict(constraints.where)
    # Host overhead: what the node uses beyond its guests, carried along unchanged.
    overhead = {name: 0 for name in nodes}
    for name in nodes:
        measured = model.node_usage.get(name)
        if measured is not None:
            guests_mem = sum(demand[v].mem for v, n in where.items() if n == name)
            overhead[name] = max(0, measured.mem_bytes - guests_mem)
    errors: list[str] = []
    split: dict[str, int] = {}  # affinity groups moving as a whole -> violation before they started
    for step, move in enumerate(moves, 1):
        at = f"step {step} ({move.vmid} {move.source} -> {move.target})"
        guest = constraints.guests.get(move.vmid)
        if guest is None:
            errors.append(f"{at}: guest {move.vmid} is not in the cluster")
            continue
        if where[move.vmid] != move.source:
            errors.append(f"{at}: guest {move.vmid} is on {where[move.vmid]}, not {move.source}")
            continue
        if move.vmid in constraints.skip_reason:
            errors.append(f"{at}: guest {move.vmid} must not be moved: {constraints.skip_reason[move.vmid]}")
        if move.type != guest.type:
            errors.append(f"{at}: guest {move.vmid} is {guest.type}, the plan says {move.type}")
        if move.target not in constraints.usable:
            errors.append(f"{at}: target {move.target} is unknown, offline or in maintenance")
            continue
        if move.target in constraints.closed:
            errors.append(f"{at}: target {move.target} may not receive guests ({constraints.closed[move.target]})")
        mem = overhead[move.target] + demand[move.vmid].mem + sum(
            demand[v].mem for v, n in where.items() if n == move.target
        )
        vcpus = demand[move.vmid].vcpus + sum(demand[v].vcpus for v, n in where.items() if n == move.target)
        limit = limits[move.target]
        # a guest that brings nothing (a stopped one) cannot take a node over a limit
        if mem > limit.mem and demand[move.vmid].mem > 0:
            errors.append(
                f"{at}: {move.target} would hold {mem / GIB:.1f} GiB, above its limit of {limit.mem / GIB:.1f} GiB"
            )
        if vcpus > limit.vcpus and demand[move.vmid].vcpus > 0:
            errors.append(f"{at}: {move.target} would run {vcpus:g} vCPUs, above its overcommit limit {limit.vcpus:g}")
        incompatible = constraints.incompatible(move.vmid, move.target)
        if incompatible:
            errors.append(f"{at}: {incompatible}")
        allowed = constraints.allowed.get(move.vmid)
        if allowed and move.target not in allowed:
            errors.append(f"{at}: {constraints.allowed_by[move.vmid]} does not allow {move.target}")
        before = constraints.violations()
        constraints.moved(move.vmid, move.target)
        after = constraints.violations()
        # An affinity group can only move one guest at a time: it may come apart while its
        # members move consecutively, and must be whole again before any other guest moves.
        moving = {g.label for g in constraints.together_of.get(move.vmid, ())}
        for label in sorted(set(split) - moving):
            if after[label] > split.pop(label):
                errors.append(f"{at}: moves another guest while {label} is still split")
        for label, size in after.items():
            if size > before[label]:
                if label in moving:
                    split.setdefault(label, before[label])
                else:
                    errors.append(f"{at}: breaks {label}")
        where[move.vmid] = move.target
    errors += [f"end of plan: {label} is left split" for label, level in sorted(split.items())
               if constraints.violations()[label] > level]
    return errors
