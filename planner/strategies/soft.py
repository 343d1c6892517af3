"""Repairs of soft rules, when they cost little: like DRS "should" rules.

A guest off the nodes a `should` node-affinity rule prefers goes back, a member of a soft
anti-affinity group sharing a node moves to a node without one, a member of a soft affinity
group joins the rest. These moves are not mandatory: they come after the mandatory moves,
are admitted by the same budget as balancing moves (planner.budget), keep every hard
limit and high-water mark, and are made only while the imbalance stays within
`soft_rule_tolerance` of what it was before them. A soft rule that cannot be repaired that
cheaply is left as it is (and never made worse).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..constraints import Group
from ..context import Context
from ..model import Cause, Why
from ..placement import NodeState
from .repair import apart_reason, joins, sharing, together_reason


def repair_soft(ctx: Context) -> None:
    state, policy = ctx.state, ctx.policy
    ceiling = state.imbalance() + policy.soft_rule_tolerance
    refused: set[str] = set()
    for vmid, targets in _broken(ctx):
        best: tuple[float, float, str] | None = None
        choice: NodeState | None = None
        for target in targets:
            if not ctx.feasible(vmid, target, mandatory=False):
                continue
            limit = ctx.refusal(vmid, target.name)
            if limit is not None:
                refused.add(limit)
                continue
            after = state.imbalance_if_moved(vmid, target)
            key = (round(after, 12), target.load, target.name)
            if after <= ceiling and (best is None or key < best):
                best, choice = key, target
        why = soft_reason(ctx, vmid, choice.name) if choice is not None else None
        if choice is not None and why is not None:
            ctx.commit(vmid, choice.name, why)
    if refused:
        ctx.notes.append(f"soft-rule repairs left undone: the budget refused them ({', '.join(sorted(refused))})")


def _broken(ctx: Context) -> Iterator[tuple[int, list[NodeState]]]:
    """Guests a soft rule wants elsewhere, with the nodes that would satisfy it (checked again
    when each is reached: earlier repairs change the groups)."""
    state, rules = ctx.state, ctx.constraints
    for vmid, preferred in sorted(rules.preferred.items()):
        if ctx.movable(vmid) and state.where[vmid] not in preferred:
            yield vmid, [state.nodes[n] for n in sorted(preferred) if n in rules.usable]
    for group in rules.apart:
        if group.strict:
            continue
        for node in sorted(n for n, c in group.nodes.items() if c > 1):
            # the biggest member stays, the others leave smallest first (as for hard groups)
            here = sorted((v for v in group.members if state.where[v] == node), key=lambda v: (-state.demand[v].mem, v))
            for vmid in sorted(here[1:], key=lambda v: (state.demand[v].mem, v)):
                if ctx.movable(vmid) and group.nodes[state.where[vmid]] > 1:
                    yield vmid, [n for n in state.active if group.nodes[n.name] == 0]
    for group in rules.together:
        if group.strict or group.violation(True) == 0:
            continue
        anchor = _anchor(ctx, group)
        for vmid in sorted(group.members, key=lambda v: (state.demand[v].mem, v)):
            if ctx.movable(vmid) and state.where[vmid] != anchor and anchor in rules.usable:
                yield vmid, [state.nodes[anchor]]


def _anchor(ctx: Context, group: Group) -> str:
    """Where most of the group already is (ties: the node holding more of its memory, then name)."""
    state = ctx.state
    held = {n: sum(state.demand[v].mem for v in group.members if state.where[v] == n) for n in group.nodes}
    return min((n for n, c in group.nodes.items() if c > 0), key=lambda n: (-group.nodes[n], -held[n], n))


def soft_reason(ctx: Context, vmid: int, target: str) -> Why | None:
    """The soft rule that moving `vmid` to `target` repairs, as a plan reason, or None."""
    rules, where = ctx.constraints, ctx.state.where[vmid]
    preferred = rules.preferred.get(vmid)
    if preferred is not None and where not in preferred and target in preferred:
        return Why(Cause.SOFT_RULE, {"rule": rules.preferred_by[vmid], "problem": "node affinity",
                                     "nodes": ", ".join(sorted(preferred))})
    for group in rules.apart_of.get(vmid, ()):
        other = sharing(ctx, group, vmid)
        if not group.strict and other is not None and group.nodes[target] == 0:
            return apart_reason(group, where, other, Cause.SOFT_RULE)
    for group in rules.together_of.get(vmid, ()):
        if not group.strict and group.violation(True) > 0 and joins(group, where, target):
            return together_reason(group, target, Cause.SOFT_RULE)
    return None
