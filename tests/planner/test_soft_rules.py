"""Soft rules (node affinity `should`, groups with `strict: false`) are repaired when it costs
little: after mandatory moves, within the budgets, never against a limit or a hard rule, and
not when the imbalance would get worse by more than `soft_rule_tolerance`."""

from typing import Any

import pytest

from planner.model import ClusterModel, MoveKind
from planner.policy import Policy
from planner.rules import RuleSet, ha_rules, load_rules
from tests.planner.builders import checked_plan, cluster, guest, node, placement_after

THREE = [node("pve1"), node("pve2"), node("pve3")]


def should(vmid: int, on: str) -> RuleSet:
    return load_rules({"node_affinity": [{"name": "pref", "vmids": [vmid], "nodes": [on], "mode": "should"}]}, "rules")


def cluster_with_200_on_pve2(**extra: Any) -> ClusterModel:
    """pve1 and pve2 hold two equal guests each (200 is one of pve2's), pve3 holds one."""
    guests = [guest(100, "pve1", 2, 8), guest(103, "pve1", 2, 8), guest(101, "pve2", 2, 8),
              guest(200, "pve2", 2, 8, **extra), guest(102, "pve3", 2, 8)]
    return cluster(THREE, guests)


def test_a_guest_off_its_should_node_goes_back_when_there_is_room() -> None:
    model = cluster_with_200_on_pve2()
    result = checked_plan(model, should(200, "pve3"))
    soft = [m for m in result.moves if m.vmid == 200]
    assert len(soft) == 1 and soft[0].target == "pve3" and soft[0].kind is MoveKind.BALANCE
    assert soft[0].reason == "soft rule: should run on pve3 (node affinity 'pref' (config rules))"
    assert placement_after(model, result)[200] == "pve3"  # and balancing does not take it away again


def test_a_cheap_repair_is_made_even_below_the_trigger() -> None:
    # 2/2/1 guests becomes 2/1/2: the imbalance stays the same
    result = checked_plan(cluster_with_200_on_pve2(), should(200, "pve3"), Policy(trigger=0.5))
    assert [(m.vmid, m.target) for m in result.moves] == [(200, "pve3")]
    assert result.imbalance_after == result.imbalance_before


def test_not_when_it_would_worsen_the_balance_beyond_the_tolerance() -> None:
    model = cluster_with_200_on_pve2()
    rules = should(200, "pve1")  # 2/2/1 would become 3/1/1
    assert checked_plan(model, rules, Policy(trigger=0.5)).moves == ()
    assert placement_after(model, checked_plan(model, rules, Policy(trigger=0.5, soft_rule_tolerance=1.0)))[200] == "pve1"


def test_not_when_the_target_has_no_room() -> None:
    nodes = [node("pve1", mem_gib=32), node("pve2"), node("pve3")]
    guests = [guest(100, "pve1", 1, 26, tags=["ignore"]), guest(200, "pve2", 1, 8), guest(101, "pve3", 1, 8)]
    result = checked_plan(cluster(nodes, guests), should(200, "pve1"), Policy(trigger=0.5, soft_rule_tolerance=1.0))
    assert result.moves == ()  # 26 + 8 GiB is above 90% of 32 GiB


def test_not_when_it_would_break_a_hard_rule() -> None:
    guests = [guest(100, "pve1", 1, 4, tags=["exclude_db"]), guest(200, "pve2", 1, 4, tags=["exclude_db"]),
              guest(101, "pve3", 1, 4)]
    result = checked_plan(cluster(THREE, guests), should(200, "pve1"), Policy(trigger=0.5, soft_rule_tolerance=1.0))
    assert result.moves == ()


def test_soft_repairs_share_the_balancing_budget() -> None:
    result = checked_plan(cluster_with_200_on_pve2(), should(200, "pve3"), Policy(max_moves=0))
    assert result.moves == ()
    assert any("soft-rule repairs left undone: the budget refused them (max_moves)" in n for n in result.notes)


def test_soft_repairs_come_after_mandatory_moves() -> None:
    guests = [guest(100, "pve1", 1, 4, tags=["plb_pin_pve2"]), guest(200, "pve2", 1, 4), guest(101, "pve3", 1, 4)]
    result = checked_plan(cluster(THREE, guests), should(200, "pve3"), Policy(trigger=0.5, soft_rule_tolerance=1.0))
    assert result.moves[0].vmid == 100 and result.moves[0].kind is MoveKind.MANDATORY
    soft = next(m for m in result.moves if m.vmid == 200)
    assert soft.kind is MoveKind.BALANCE and soft.target == "pve3" and soft.reason.startswith("soft rule:")


def test_non_strict_ha_node_affinity_is_repaired_like_should() -> None:
    model = cluster_with_200_on_pve2()
    rules = ha_rules([{"rule": "pref", "type": "node-affinity", "resources": "vm:200", "nodes": "pve3", "strict": 0}])
    result = checked_plan(model, rules)
    assert placement_after(model, result)[200] == "pve3"
    assert next(m for m in result.moves if m.vmid == 200).reason.startswith("soft rule: should run on pve3 (node affinity 'pref' (HA rule pref))")


@pytest.mark.parametrize("kind, where, tolerance, together", [
    ("anti_affinity", ("pve1", "pve1", "pve2", "pve3"), 0.2, False),  # two members share pve1: spread them
    ("affinity", ("pve1", "pve2", "pve3", "pve3"), 0.3, True),  # members apart: one joins the other
])
def test_soft_groups_are_repaired(kind: str, where: tuple[str, ...], tolerance: float, together: bool) -> None:
    guests = [guest(100 + i, node_name, 1, 4) for i, node_name in enumerate(where)]
    rules = load_rules({kind: [{"name": "app", "vmids": [100, 101], "strict": False}]}, "rules")
    model = cluster(THREE, guests)
    result = checked_plan(model, rules, Policy(trigger=0.5, soft_rule_tolerance=tolerance))
    after = placement_after(model, result)
    assert (after[100] == after[101]) is together
    label = kind.replace("_", "-")
    assert any(m.reason.startswith(f"soft rule: {label} group 'app'") for m in result.moves)
