"""The planner: a pure function from what was observed, the rules and the policy to a plan.

No I/O, no clock, no globals: the same input always gives the same plan. Mandatory moves
(maintenance evacuation, repairs of broken hard rules) come first, then balancing moves;
every move is checked against the state all earlier moves leave behind.
"""

from __future__ import annotations

from collections import Counter

from .constraints import Constraints
from .model import ClusterModel, Plan, Skipped
from .placement import ClusterState, imbalance
from .policy import Policy
from .rules import RuleSet
from .strategies import STRATEGIES, Context


def plan(model: ClusterModel, rules: RuleSet, policy: Policy) -> Plan:
    """Plan moves for `model`. Tag rules (ignore, exclude_*, plb_*) are read from the guests
    here; pass the config and HA rules in `rules`."""
    constraints = Constraints(model, rules, policy)
    state = ClusterState(model, policy, constraints.maintenance, constraints.reservations)
    before = state.snapshot()
    ctx = Context(state, constraints, policy)
    for strategy in STRATEGIES:
        strategy(ctx)
    after = state.snapshot()
    return Plan(
        moves=tuple(ctx.moves),
        nodes_before=before,
        nodes_after=after,
        imbalance_before=round(imbalance([n.load for n in before if n.state == "online"]), 6),
        imbalance_after=round(imbalance([n.load for n in after if n.state == "online"]), 6),
        skipped=tuple(
            Skipped(vmid, constraints.guests[vmid].name, reason)
            for vmid, reason in sorted(constraints.skip_reason.items())
        ),
        problems=tuple(constraints.problems + ctx.problems),
        sources=dict(sorted(Counter(u.source for u in model.guest_usage.values()).items())),
        window=model.window,
        notes=tuple(ctx.notes),
    )
