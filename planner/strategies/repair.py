"""Repairs of hard rules the current placement breaks: node affinity, then anti-affinity,
then affinity. Each repair is a mandatory move; one that cannot be made is a problem."""

from __future__ import annotations

from ..constraints import Group
from ..context import Context
from ..model import Cause, Why


def evacuate_reason(node: str) -> Why:
    return Why(Cause.EVACUATION, {"node": node})


def node_affinity_reason(ctx: Context, vmid: int) -> Why:
    c = ctx.constraints
    return Why(Cause.REPAIR, {"rule": c.allowed_by[vmid], "problem": "node affinity", "nodes": ", ".join(sorted(c.allowed[vmid]))})


def apart_reason(group: Group, node: str, other: int, cause: Cause = Cause.REPAIR) -> Why:
    return Why(cause, {"rule": group.label, "problem": "apart", "node": node, "other": other})


def together_reason(group: Group, anchor: str, cause: Cause = Cause.REPAIR) -> Why:
    return Why(cause, {"rule": group.label, "problem": "together", "node": anchor})


def sharing(ctx: Context, group: Group, vmid: int) -> int | None:
    """Another member of `group` on the node of `vmid`, when there is one."""
    where = ctx.state.where[vmid]
    return next((v for v in group.members if v != vmid and ctx.state.where[v] == where), None)


def joins(group: Group, source: str, target: str) -> bool:
    """Moving one member from `source` to `target` brings the group closer together."""
    return target != source and group.nodes[target] >= max(group.nodes.values())


def repair_reason(ctx: Context, vmid: int, target: str) -> Why | None:
    """The hard rule that moving `vmid` to `target` repairs (or the evacuation it makes), or None."""
    rules, where = ctx.constraints, ctx.state.where[vmid]
    if ctx.state.nodes[where].state == "maintenance":
        return evacuate_reason(where)
    allowed = rules.allowed.get(vmid)
    if allowed and where not in allowed and target in allowed and vmid not in rules.stranded:
        return node_affinity_reason(ctx, vmid)
    for group in rules.apart_of.get(vmid, ()):
        other = sharing(ctx, group, vmid)
        if group.strict and not group.excused and other is not None and group.nodes[target] == 0:
            return apart_reason(group, where, other)
    for group in rules.together_of.get(vmid, ()):
        if group.strict and not group.excused and group.violation(True) > 0 and joins(group, where, target):
            return together_reason(group, target)
    return None


def repair_node_affinity(ctx: Context) -> None:
    for vmid, allowed in sorted(ctx.constraints.allowed.items()):
        where = ctx.state.where[vmid]
        if not allowed or where in allowed or vmid in ctx.constraints.stranded:
            continue
        if not _can_repair(ctx, vmid, ctx.constraints.allowed_by[vmid]):
            continue
        ctx.place(vmid, node_affinity_reason(ctx, vmid))


def repair_anti_affinity(ctx: Context) -> None:
    for group in ctx.constraints.apart:
        if not group.strict or group.excused:
            continue
        for node in sorted(n for n, c in group.nodes.items() if c > 1):
            here = [v for v in group.members if ctx.state.where[v] == node]
            # Keep the guest that cannot move (or the biggest) and move the rest, smallest first.
            here.sort(key=lambda v: (ctx.movable(v), -ctx.state.demand[v].mem, v))
            for vmid in sorted(here[1:], key=lambda v: (ctx.state.demand[v].mem, v)):
                if _can_repair(ctx, vmid, group.label):
                    ctx.place(vmid, apart_reason(group, node, here[0]))


def repair_affinity(ctx: Context) -> None:
    for group in ctx.constraints.together:
        if not group.strict or group.excused or group.violation(True) == 0:
            continue
        fixed = {ctx.state.where[v] for v in group.members if not ctx.movable(v)}
        anchor = (
            next(iter(fixed))
            if fixed
            else min(group.nodes, key=lambda n: (-group.nodes[n], -ctx.state.nodes[n].mem, n))
        )
        for vmid in sorted(group.members, key=lambda v: (ctx.state.demand[v].mem, v)):
            if ctx.state.where[vmid] == anchor or not _can_repair(ctx, vmid, group.label):
                continue
            target = ctx.state.nodes[anchor]
            if ctx.feasible(vmid, target, mandatory=True) or (
                ctx.make_room(vmid) is target and ctx.feasible(vmid, target, mandatory=True)
            ):
                ctx.commit(vmid, anchor, together_reason(group, anchor))
            else:
                ctx.problems.append(f"{group.label}: guest {vmid} cannot join the group on {anchor}: no room there")


def _can_repair(ctx: Context, vmid: int, label: str) -> bool:
    if ctx.movable(vmid):
        return True
    ctx.problems.append(
        f"{label} is broken by guest {vmid} ({ctx.constraints.guests[vmid].name}), which cannot move: "
        f"{ctx.constraints.skip_reason[vmid]}"
    )
    return False
