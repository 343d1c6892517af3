"""The one budget gate: cost limits, relief before balance, stopped guests need no room."""

from __future__ import annotations

from planner.framework import plan
from planner.model import Cause, ClusterModel, MoveKind
from planner.policy import GIB, Policy
from planner.rules import RuleSet
from tests.planner.builders import checked_plan, cluster, guest, node, placement_after


def hot_cluster() -> ClusterModel:
    """pve1's guests ask 28 cores of its 16; the other four nodes are moderately busy."""
    guests = [guest(100 + i, "pve1", 2, 3) for i in range(14)]
    for n in range(2, 6):
        guests += [guest(n * 100 + i, f"pve{n}", 1.5, 6) for i in range(4)]
    return cluster([node(f"pve{i}") for i in range(1, 6)], guests)


def test_a_hot_node_is_relieved_beyond_the_per_node_count_while_cost_budget_remains() -> None:
    model = cluster_ = hot_cluster()
    result = checked_plan(cluster_)
    where = placement_after(model, result)
    off_pve1 = [m for m in result.moves if m.source == "pve1"]
    # max_moves_per_node (4) does not starve relief: pve1 ends below its high-water mark
    pve1 = next(n for n in result.nodes_after if n.name == "pve1")
    assert pve1.cpu_cores <= 0.85 * 16
    assert len(off_pve1) > 4 and all(m.cause is Cause.RELIEF for m in off_pve1[:4])
    assert result.imbalance_after < 0.2
    assert sum(1 for v, n in where.items() if n == "pve1") < 14


def test_relief_is_still_limited_by_the_cost_budget_and_the_note_names_the_limit() -> None:
    result = checked_plan(hot_cluster(), policy=Policy(max_copy_per_node=9 * GIB))
    assert 0 < len(result.moves) <= 3  # 3 GiB each: three fit in 9 GiB
    assert any("max_copy_per_node (pve1)" in n for n in result.notes)


def test_a_stopped_guest_pinned_to_an_overcommitted_node_needs_no_room() -> None:
    # pve2 runs 70 vCPUs on 16 threads (overcommit limit 64): a running guest could not join,
    # but the stopped guest brings no vCPUs and no memory
    busy = [guest(200 + i, "pve2", 0.5, 2, vcpus=10) for i in range(7)]
    stopped = guest(100, "pve1", 0, 4, status="stopped", tags=["plb_pin_pve2"])
    model = cluster([node("pve1"), node("pve2"), node("pve3")], [stopped, *busy])
    result = checked_plan(model, policy=Policy(trigger=1.0, cpu_high_water=1.0, memory_high_water=1.0))
    assert not any("has room for its 0.0 GiB" in p for p in result.problems), result.problems
    assert [(m.vmid, m.target, m.kind) for m in result.moves] == [(100, "pve2", MoveKind.MANDATORY)]


def test_plans_are_the_same_whatever_the_search_effort_is_asked_twice() -> None:
    for effort in ("off", "quick", "thorough"):
        policy = Policy(search=effort)
        assert plan(hot_cluster(), RuleSet(), policy) == plan(hot_cluster(), RuleSet(), policy)


def test_the_time_budget_charges_a_move_as_long_as_the_plan_shows_it() -> None:
    """A target's own bwlimit slows the migration: the budget must count that time, not the source's."""
    model = cluster([node("a", mem_gib=64), node("b", mem_gib=64)],
                    [guest(100, "a", 4, 8), guest(101, "a", 4, 8), guest(102, "a", 4, 8)])
    fast = plan(model, RuleSet(), Policy(search="off"))
    assert fast.moves and all(m.target == "b" for m in fast.moves)
    slow_policy = Policy(search="off", node_bwlimit={"b": 1000})  # KiB/s: 8 GiB takes over 2 hours
    slow = plan(model, RuleSet(), slow_policy)
    assert slow.moves == ()
    assert any("max_migration_seconds" in n for n in slow.notes)
