"""Each rule kind, in each of its forms (tag, rules block, HA rule), as the planner applies it."""

from typing import Any

import pytest

from planner.model import Move, MoveKind, Plan, Usage
from planner.policy import GIB, Policy
from planner.rules import ClosedRule, RuleSet, ha_rules, load_rules
from planner.verify import check_moves
from pveapi.inventory import Guest
from tests.planner.builders import checked_plan, cluster, guest, node, placement_after

THREE = [node("pve1"), node("pve2"), node("pve3")]
# pve1 carries everything: any balancing plan wants to move guests off it
HOT = [guest(100 + i, "pve1", cpu=3, mem_gib=8) for i in range(5)]


def moved(result: Plan) -> set[int]:
    return {m.vmid for m in result.moves}


@pytest.mark.parametrize("tag", ["ignore", "plb_ignore"])
def test_ignore_tags_keep_a_guest_in_place_but_listed(tag: str) -> None:
    model = cluster(THREE, [guest(100 + i, "pve1", cpu=3, mem_gib=8, tags=[tag]) for i in range(5)])
    result = checked_plan(model)
    assert result.moves == ()
    assert {s.vmid for s in result.skipped} == {100, 101, 102, 103, 104}
    assert all(s.reason == f"ignored (tag {tag})" for s in result.skipped)


def test_ignore_by_rules_block_vmid_and_pool() -> None:
    guests = HOT + [guest(200, "pve1", cpu=3, mem_gib=8, pool="backup")]
    rules = load_rules({"ignore": [100, 101, 102, 103, 104], "anti_affinity": []}, "rules").merge(
        load_rules({"ignore": [{"pools": ["backup"]}]}, "rules")
    )
    result = checked_plan(cluster(THREE, guests), rules)
    assert result.moves == ()
    assert {s.vmid: s.reason for s in result.skipped} == {v: "ignored (config rules)" for v in (100, 101, 102, 103, 104, 200)}


@pytest.mark.parametrize("prefix", ["exclude_", "plb_anti_affinity_"])
def test_anti_affinity_tags_are_repaired_first(prefix: str) -> None:
    guests = [guest(100, "pve1", 1, 2, tags=[f"{prefix}dns"]), guest(101, "pve1", 1, 2, tags=[f"{prefix}dns"])]
    result = checked_plan(cluster(THREE, guests))
    assert len(result.moves) == 1 and result.moves[0].kind is MoveKind.MANDATORY
    assert "anti-affinity group 'dns'" in result.moves[0].reason
    after = placement_after(cluster(THREE, guests), result)
    assert after[100] != after[101]


def test_anti_affinity_from_rules_block_and_ha_rule() -> None:
    guests = [guest(100, "pve1", 1, 2), guest(101, "pve1", 1, 2), guest(102, "pve2", 1, 2), guest(103, "pve2", 1, 2)]
    model = cluster(THREE, guests)
    rules = load_rules({"anti_affinity": [{"name": "web", "vmids": [100, 101]}]}, "rules").merge(
        ha_rules([{"rule": "db", "type": "resource-affinity", "resources": "vm:102,vm:103", "affinity": "negative"}])
    )
    after = placement_after(model, checked_plan(model, rules, Policy(trigger=1.0)))
    assert after[100] != after[101] and after[102] != after[103]


def test_balancing_never_puts_two_anti_affinity_members_together() -> None:
    # pve2 and pve3 are empty; the two tagged guests on pve1 can each only go where the other is not
    guests = HOT + [guest(200, "pve2", 0.1, 1, tags=["exclude_x"]), guest(201, "pve1", 3, 8, tags=["exclude_x"])]
    model = cluster(THREE, guests)
    after = placement_after(model, checked_plan(model, policy=Policy(trigger=0.0)))
    assert after[200] != after[201]


def test_unsatisfiable_anti_affinity_is_reported_not_solved() -> None:
    guests = [guest(100 + i, "pve1", 0.5, 1, tags=["exclude_quorum"]) for i in range(4)]
    result = checked_plan(cluster(THREE, guests))
    assert any("anti-affinity group 'quorum'" in p and "cannot be satisfied" in p for p in result.problems)
    assert all(m.kind is MoveKind.BALANCE for m in result.moves)
    # kept from getting worse: no node ends with more members than it started with
    after = placement_after(cluster(THREE, guests), result)
    assert max(list(after.values()).count(n) for n in ("pve1", "pve2", "pve3")) <= 4


def test_affinity_tag_gathers_the_group_on_its_fullest_node() -> None:
    guests = [
        guest(100, "pve1", 1, 2, tags=["plb_affinity_app"]),
        guest(101, "pve1", 1, 2, tags=["plb_affinity_app"]),
        guest(102, "pve2", 1, 2, tags=["plb_affinity_app"]),
    ]
    model = cluster(THREE, guests)
    result = checked_plan(model, policy=Policy(trigger=1.0))
    assert [(m.vmid, m.target, m.kind) for m in result.moves] == [(102, "pve1", MoveKind.MANDATORY)]


def test_affinity_from_ha_rule_keeps_the_pair_together_while_balancing() -> None:
    guests = HOT + [guest(200, "pve1", 3, 8), guest(201, "pve1", 3, 8)]
    model = cluster(THREE, guests)
    rules = ha_rules([{"rule": "pair", "type": "resource-affinity", "resources": "vm:200,vm:201", "affinity": "positive"}])
    result = checked_plan(model, rules, Policy(trigger=0.0))
    assert result.moves and not moved(result) & {200, 201}


def test_pin_tag_moves_a_guest_to_its_node_and_keeps_it_there() -> None:
    guests = HOT + [guest(200, "pve1", 3, 8, tags=["plb_pin_pve3"])]
    model = cluster(THREE, guests)
    result = checked_plan(model, policy=Policy(trigger=0.0))
    assert result.moves[0].vmid == 200 and result.moves[0].target == "pve3"
    assert result.moves[0].kind is MoveKind.MANDATORY
    assert [m.vmid for m in result.moves].count(200) == 1


def test_node_affinity_must_in_rules_block_by_pool() -> None:
    guests = [guest(100, "pve1", 1, 2, pool="db"), guest(101, "pve2", 1, 2, pool="db"), guest(102, "pve1", 1, 2)]
    model = cluster(THREE, guests)
    rules = load_rules({"node_affinity": [{"name": "db-on-3", "pools": ["db"], "nodes": ["pve3"]}]}, "rules")
    after = placement_after(model, checked_plan(model, rules, Policy(trigger=1.0)))
    assert after[100] == after[101] == "pve3" and after[102] == "pve1"


def test_ha_node_affinity_uses_the_highest_priority_available_nodes() -> None:
    guests = [guest(100, "pve1", 1, 2)]
    rules = ha_rules([{"rule": "p", "type": "node-affinity", "resources": "vm:100", "nodes": "pve2:2,pve3:1", "strict": 0}])
    # non-strict HA rules are preferences the HA manager enforces itself: balancing respects them
    model = cluster(THREE, guests)
    result = checked_plan(model, rules, Policy(trigger=0.0))
    assert all(m.target in ("pve2",) for m in result.moves if m.vmid == 100)
    strict = ha_rules([{"rule": "p", "type": "node-affinity", "resources": "vm:100", "nodes": "pve2:2,pve3:1", "strict": 1}])
    result = checked_plan(cluster(THREE, guests, maintenance=["pve2"]), strict, Policy(trigger=1.0))
    assert [(m.vmid, m.target) for m in result.moves] == [(100, "pve3")]


def test_should_rules_keep_a_guest_on_its_preferred_nodes_when_balancing() -> None:
    guests = HOT + [guest(200, "pve1", 3, 8)]
    rules = load_rules({"node_affinity": [{"name": "pref", "vmids": [200], "nodes": ["pve1"], "mode": "should"}]}, "rules")
    result = checked_plan(cluster(THREE, guests), rules, Policy(trigger=0.0))
    assert result.moves and 200 not in moved(result)


def test_pin_to_an_unknown_node_is_a_problem_not_a_move() -> None:
    model = cluster(THREE, [guest(100, "pve1", tags=["plb_pin_pve9"])])
    result = checked_plan(model, policy=Policy(trigger=1.0))
    assert result.moves == ()
    assert any("names no node of this cluster" in p for p in result.problems)


@pytest.mark.parametrize("how", ["rules", "model", "hastate"])
def test_maintenance_nodes_are_evacuated_and_never_targeted(how: str) -> None:
    nodes = [node("pve1"), node("pve2"), node("pve3", hastate="maintenance" if how == "hastate" else None)]
    guests = [guest(100 + i, "pve3", 1, 4) for i in range(4)] + [guest(200, "pve1", 1, 4)]
    model = cluster(nodes, guests, maintenance=["pve3"] if how == "model" else [])
    rules = load_rules({"maintenance": ["pve3"]}, "rules") if how == "rules" else RuleSet()
    result = checked_plan(model, rules)
    evacuated = [m for m in result.moves if m.source == "pve3"]
    assert {m.vmid for m in evacuated} == {100, 101, 102, 103}
    assert all(m.kind is MoveKind.MANDATORY and "maintenance" in m.reason for m in evacuated)
    assert all(m.target != "pve3" for m in result.moves)
    assert next(n for n in result.nodes_after if n.name == "pve3").state == "maintenance"


def test_a_closed_node_receives_nothing_and_keeps_its_guests() -> None:
    # pve3 is empty, so a balancing plan fills it; closed, it is left out and nothing leaves it either.
    model = cluster(THREE, HOT + [guest(200, "pve2", 1, 4)])
    assert any(m.target == "pve3" for m in checked_plan(model).moves)
    closed = RuleSet(closed=(ClosedRule(frozenset({"pve3", "pve2"}), "what-if"),))
    assert checked_plan(model, closed).moves == ()
    only_pve3 = RuleSet(closed=(ClosedRule(frozenset({"pve3"}), "what-if"),))
    result = checked_plan(model, only_pve3)
    assert result.moves and all(m.target == "pve2" for m in result.moves)
    step = Move(100, "g100", "qemu", "pve1", "pve3", "by hand", 8 * GIB, 3.0, 0.0)
    assert check_moves(model, only_pve3, Policy(), (step,)) == [
        "step 1 (100 pve1 -> pve3): target pve3 may not receive guests (what-if)"]


def test_a_guest_that_cannot_leave_a_maintenance_node_is_a_problem() -> None:
    guests = [guest(100, "pve3", 1, 4, lock="backup"), guest(101, "pve3", 1, 4)]
    result = checked_plan(cluster(THREE, guests, maintenance=["pve3"]))
    assert [m.vmid for m in result.moves] == [101]
    assert any("100" in p and "stays on maintenance node pve3" in p and "locked" in p for p in result.problems)


def test_evacuation_without_room_is_a_problem_and_never_overfills() -> None:
    nodes = [node("pve1", mem_gib=16), node("pve2", mem_gib=16)]
    guests = [guest(100, "pve2", 1, 12), guest(101, "pve1", 1, 6)]
    result = checked_plan(cluster(nodes, guests, maintenance=["pve2"]))
    assert result.moves == ()
    assert any("none of the nodes the rules allow (pve1) has room for its 12.0 GiB" in p for p in result.problems)


def test_evacuation_makes_room_by_moving_a_smaller_guest_first() -> None:
    nodes = [node("pve1", mem_gib=32), node("pve2", mem_gib=32), node("pve3", mem_gib=32)]
    # 90% usable = 28.8 GiB per node; pve1 and pve2 each have 20 GiB used, pve3 (maintenance) holds a 12 GiB VM
    guests = [guest(100, "pve1", 1, 14), guest(101, "pve1", 1, 6), guest(102, "pve2", 1, 14), guest(103, "pve2", 1, 6),
              guest(104, "pve3", 1, 12)]
    rules = load_rules({"maintenance": ["pve3"]}, "rules")
    result = checked_plan(cluster(nodes, guests), rules)
    assert [m.vmid for m in result.moves[:2]] == [101, 104] or [m.vmid for m in result.moves[:2]] == [103, 104]
    assert "makes room" in result.moves[0].reason and result.problems == ()


def test_reservations_limit_what_a_node_may_receive() -> None:
    nodes = [node("pve1", mem_gib=32), node("pve2", mem_gib=32)]
    guests = [guest(100, "pve1", 1, 8), guest(101, "pve1", 1, 8), guest(102, "pve1", 1, 8)]
    reserve = load_rules({"reservations": {"pve2": {"memory": "25GiB"}}}, "rules")
    assert checked_plan(cluster(nodes, guests), reserve, Policy(trigger=0.0)).moves == ()
    assert checked_plan(cluster(nodes, guests), RuleSet(), Policy(trigger=0.0)).moves != ()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"lock": "backup"}, "locked (backup)"),
        ({"template": True}, "template"),
    ],
)
def test_guests_the_api_would_refuse_are_skipped_with_the_reason(kwargs: dict[str, Any], reason: str) -> None:
    guests = [guest(100 + i, "pve1", 3, 8, **kwargs) for i in range(4)]
    result = checked_plan(cluster(THREE, guests), policy=Policy(trigger=0.0))
    assert result.moves == ()
    assert all(s.reason.startswith(reason) for s in result.skipped)


def test_guests_the_api_refuses_are_never_planned_whatever_the_policy() -> None:
    # pinned_local is what the API refused under the policy (observe applies allow_local_disks),
    # so the planner must not let allow_local_disks bring a refused move back.
    model = cluster(THREE, HOT, pinned_local=[100, 101, 102, 103, 104])
    for policy in (Policy(trigger=0.0), Policy(trigger=0.0, allow_local_disks=True)):
        result = checked_plan(model, policy=policy)
        assert result.moves == () and all("Proxmox refuses to migrate it" in s.reason for s in result.skipped)


def test_guests_on_an_offline_node_are_not_moved_and_the_node_is_no_target() -> None:
    nodes = [node("pve1"), node("pve2"), node("pve3", online=False)]
    guests = HOT + [guest(300, "pve3", 1, 4)]
    result = checked_plan(cluster(nodes, guests), policy=Policy(trigger=0.0))
    assert 300 not in moved(result) and all(m.target != "pve3" for m in result.moves)
    assert any(s.vmid == 300 and "offline" in s.reason for s in result.skipped)


def test_stopped_guests_do_not_count_as_load_and_are_not_balanced() -> None:
    guests = [guest(100 + i, "pve1", 3, 8, status="stopped") for i in range(5)]
    result = checked_plan(cluster(THREE, guests), policy=Policy(trigger=0.0))
    assert result.moves == () and result.imbalance_before == 0.0


def test_stopped_guests_are_evacuated_from_maintenance_cheaply() -> None:
    guests = [guest(100, "pve3", 3, 8, status="stopped")]
    result = checked_plan(cluster(THREE, guests, maintenance=["pve3"]))
    assert [m.vmid for m in result.moves] == [100] and result.moves[0].est_seconds <= 5


def test_a_guest_pinned_to_a_node_in_maintenance_stays_and_is_reported() -> None:
    guests = [guest(100, "pve1", 1, 2, tags=["plb_pin_pve3"]), guest(101, "pve3", 1, 2, tags=["plb_pin_pve3"])]
    result = checked_plan(cluster(THREE, guests, maintenance=["pve3"]), policy=Policy(trigger=1.0))
    assert result.moves == ()
    assert any("guest 100" in p and "allows only pve3, now offline or in maintenance" in p for p in result.problems)
    assert any("guest 101" in p and "the rules allow no online node outside maintenance" in p for p in result.problems)


def test_an_affinity_group_leaves_a_maintenance_node_together() -> None:
    guests = [guest(100, "pve3", 1, 4, tags=["plb_affinity_app"]), guest(101, "pve3", 1, 4, tags=["plb_affinity_app"]),
              guest(102, "pve1", 2, 8)]
    model = cluster(THREE, guests, maintenance=["pve3"])
    result = checked_plan(model, policy=Policy(trigger=1.0))
    assert [(m.vmid, m.target) for m in result.moves] == [(100, "pve2"), (101, "pve2")]
    assert all("affinity group 'app'" in m.reason for m in result.moves)


@pytest.mark.parametrize(
    ("guests", "why"),
    [
        ([guest(100, "pve1", tags=["plb_affinity_x", "plb_pin_pve1"]), guest(101, "pve2", tags=["plb_affinity_x", "plb_pin_pve2"])],
         "its guests share no node they may all run on"),
        ([guest(100, "pve1", tags=["plb_affinity_x"], lock="backup"), guest(101, "pve2", tags=["plb_affinity_x"], lock="backup")],
         "guests that cannot move sit on different nodes (pve1, pve2)"),
        ([guest(100, "pve1", tags=["plb_affinity_x", "exclude_y"]), guest(101, "pve2", tags=["plb_affinity_x", "exclude_y"])],
         "it overlaps anti-affinity group 'y'"),
    ],
)
def test_unsatisfiable_affinity_is_reported_and_left_alone(guests: list[tuple[Guest, Usage]], why: str) -> None:
    result = checked_plan(cluster(THREE, guests), policy=Policy(trigger=1.0))
    assert result.moves == ()
    assert any(p.startswith("affinity group 'x' (tag plb_affinity_x) cannot be satisfied: " + why) for p in result.problems)
