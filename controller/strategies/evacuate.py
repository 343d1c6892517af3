"""Maintenance evacuation: every guest that can move leaves nodes in maintenance, biggest first
(so the hardest to place get the most choice)."""

from __future__ import annotations

from .context import Context


def evacuate(ctx: Context) -> None:
    for node in sorted(ctx.rules.maintenance):
        if ctx.state.nodes[node].state == "offline":
            continue  # its guests cannot be migrated; they are listed as skipped
        for vmid in sorted(ctx.residents[node], key=lambda v: (-ctx.state.demand[v].mem, v)):
            guest = ctx.rules.guests[vmid]
            if not ctx.movable(vmid):
                ctx.problems.append(
                    f"guest {vmid} ({guest.name}) stays on maintenance node {node}: {ctx.rules.skip_reason[vmid]}"
                )
                continue
            ctx.place(vmid, f"evacuates maintenance node {node}")
