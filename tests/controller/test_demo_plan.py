"""The demo cluster's plan, from live figures read over HTTPS: every balancing move earns its place."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.observe import observe
from planner.constraints import Constraints
from planner.framework import plan
from planner.model import Cause, ClusterModel, MoveKind, Plan
from planner.placement import Placement
from planner.policy import Policy
from planner.rules import RuleSet, ha_rules
from pveapi.client import PveClient
from tests.support.sim import RunningSimulator, running_simulator


def _imbalance_without(model: ClusterModel, rules: RuleSet, policy: Policy, result: Plan, left_out: set[int]) -> float:
    constraints = Constraints(model, rules, policy)
    state = Placement(model, policy, constraints.maintenance, constraints.reservations)
    for move in result.moves:
        if move.vmid not in left_out:
            state.move(move.vmid, move.target)
    return state.imbalance()


# moments of the simulated day whose plans ended in a cancelling pair before moves had to earn their place
VISIBLE = 0.001  # the table shows the imbalance to three decimals
MOMENTS = (1_780_007_200, 1_780_014_400, 1_780_028_800, 1_780_072_000)


@pytest.fixture(scope="module")
def demo_sim() -> Iterator[RunningSimulator]:
    with running_simulator("demo", time_scale=0) as sim:
        yield sim


@pytest.mark.parametrize("at", MOMENTS)
def test_no_pair_of_demo_moves_cancels_out(demo_sim: RunningSimulator, at: int) -> None:
    demo_sim.set_time(at)
    observation = observe(PveClient(demo_sim.connection_settings()), None, at=at)
    model, rules, policy = observation.model, ha_rules([dict(e) for e in observation.ha_rule_entries]), Policy()
    result = plan(model, rules, policy)
    balancing = [m for m in result.moves if m.kind is MoveKind.BALANCE and m.cause is not Cause.SOFT_RULE]
    assert balancing, "the demo cluster is imbalanced: the plan balances it"
    for i, a in enumerate(balancing):
        for b in balancing[i + 1:]:
            if (a.source, a.target) != (b.target, b.source):
                continue
            # both directions between the same two nodes: together they must lower the imbalance
            # by more than the plan's table can even show (0.001); two migrations for less cancel out
            gained = _imbalance_without(model, rules, policy, result, {a.vmid, b.vmid}) - result.imbalance_after
            assert gained > VISIBLE, f"{a.vmid} {a.source}->{a.target} and {b.vmid} {b.source}->{b.target} gain {gained:.4f}"
