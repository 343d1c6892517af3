"""Maintenance evacuation: every guest that can move leaves nodes in maintenance, biggest first
(so the hardest to place get the most choice). An affinity group that sits wholly on the node
moves as one, consecutively, to a node with room for all of it."""

from __future__ import annotations

from ..constraints import Group
from ..context import Context
from ..model import Cause, Why
from .repair import evacuate_reason


def evacuate(ctx: Context) -> None:
    for node in sorted(ctx.constraints.maintenance):
        if ctx.state.nodes[node].state == "offline":
            continue  # its guests cannot be migrated; they are listed as skipped
        for vmid in sorted(ctx.residents[node], key=lambda v: (-ctx.state.demand[v].mem, v)):
            if ctx.state.where[vmid] != node:
                continue  # already left with its affinity group
            guest = ctx.constraints.guests[vmid]
            reason = evacuate_reason(node)
            if not ctx.movable(vmid):
                ctx.problems.append(
                    f"guest {vmid} ({guest.name}) stays on maintenance node {node}: {ctx.constraints.skip_reason[vmid]}"
                )
                continue
            group = _whole_group_here(ctx, vmid, node)
            if group is None:
                ctx.place(vmid, reason)
            elif not _move_group(ctx, group, Why(Cause.EVACUATION, {"node": node, "group": group.label})):
                ctx.problems.append(f"{group.label} must leave maintenance node {node} but no node has room for all of it")


def _whole_group_here(ctx: Context, vmid: int, node: str) -> Group | None:
    """The strict affinity group of `vmid` when all its members sit on `node` and can move."""
    for group in ctx.constraints.together_of.get(vmid, ()):
        if group.strict and not group.excused and group.nodes[node] == len(group.members):
            if all(ctx.movable(v) for v in group.members):
                return group
    return None


def _move_group(ctx: Context, group: Group, reason: Why) -> bool:
    state = ctx.state
    mem = sum(state.demand[v].mem for v in group.members)
    vcpus = sum(state.demand[v].vcpus for v in group.members)
    for target in sorted(state.nodes.values(), key=lambda n: (n.load, n.name)):
        if target.name not in ctx.constraints.usable:
            continue
        if target.mem + mem > target.limits.mem or target.vcpus + vcpus > target.limits.vcpus:
            continue
        if not all(ctx.constraints.rules_allow(v, target.name, True, moving_group=group) for v in group.members):
            continue
        for v in group.members:
            ctx.commit(v, target.name, reason)
        return True
    return False
