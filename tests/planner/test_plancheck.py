"""The independent checker refuses every kind of unsafe step (the executor relies on it)."""

import dataclasses

from planner.framework import plan
from planner.model import Move, Plan
from planner.policy import Policy
from planner.rules import RuleSet, load_rules
from planner.verify import verify_plan
from pveapi.inventory import GuestType
from tests.planner.builders import GIB, cluster, guest, node

NODES = [node("pve1", mem_gib=32), node("pve2", mem_gib=32), node("pve3", mem_gib=32, online=False)]
MODEL = cluster(
    NODES,
    [
        guest(100, "pve1", 1, 20),
        guest(101, "pve2", 1, 20),
        guest(102, "pve1", 1, 2, tags=["exclude_a"]),
        guest(103, "pve2", 1, 2, tags=["exclude_a"]),
        guest(104, "pve1", 1, 2, lock="backup"),
        guest(105, "pve1", 1, 2, type="lxc"),
    ],
)


def step(vmid: int, source: str, target: str, type: GuestType = "qemu") -> Move:
    return Move(vmid, f"g{vmid}", type, source, target, "test", 2 * GIB, 1.0, 1.0)


def check(*moves: Move, rules: RuleSet = RuleSet(), policy: Policy = Policy()) -> list[str]:
    empty = Plan(moves=tuple(moves), nodes_before=(), nodes_after=(), imbalance_before=0, imbalance_after=0)
    return verify_plan(MODEL, rules, policy, empty)


def test_a_safe_sequence_passes() -> None:
    assert check(step(105, "pve1", "pve2", "lxc"), step(105, "pve2", "pve1", "lxc")) == []


def test_memory_over_the_limit_is_refused_at_the_step_it_happens() -> None:
    (error,) = check(step(105, "pve1", "pve2", "lxc"), step(100, "pve1", "pve2"))
    assert error.startswith("step 2 (100 pve1 -> pve2): pve2 would hold 44.0 GiB, above its limit of 28.8 GiB")


def test_anti_affinity_breaks_are_refused() -> None:
    (error,) = check(step(102, "pve1", "pve2"))
    assert "breaks anti-affinity group 'a'" in error


def test_moves_the_api_would_refuse_are_refused() -> None:
    errors = check(
        step(104, "pve1", "pve2"),  # locked
        step(105, "pve1", "pve3", "lxc"),  # offline target
        step(101, "pve1", "pve2"),  # wrong source
        step(999, "pve1", "pve2"),  # unknown guest
        step(105, "pve1", "pve2", "qemu"),  # wrong type
    )
    assert [e.split(":")[0] for e in errors] == [
        "step 1 (104 pve1 -> pve2)", "step 2 (105 pve1 -> pve3)", "step 3 (101 pve1 -> pve2)",
        "step 4 (999 pve1 -> pve2)", "step 5 (105 pve1 -> pve2)",
    ]
    assert "locked (backup)" in errors[0] and "offline or in maintenance" in errors[1]
    assert "is on pve2, not pve1" in errors[2] and "not in the cluster" in errors[3] and "is lxc" in errors[4]


def test_node_affinity_and_overcommit_are_checked() -> None:
    pin = load_rules({"node_affinity": [{"name": "stay", "vmids": [105], "nodes": ["pve1"]}]}, "rules")
    assert "node affinity 'stay' (config rules) does not allow pve2" in check(step(105, "pve1", "pve2", "lxc"), rules=pin)[0]
    tight = dataclasses.replace(Policy(), cpu_overcommit=0.5)
    assert "above its overcommit limit" in check(step(105, "pve1", "pve2", "lxc"), policy=tight)[0]


def test_an_affinity_group_may_only_come_apart_while_it_moves() -> None:
    together = cluster(NODES, [guest(200, "pve1", 1, 1, tags=["plb_affinity_x"]), guest(201, "pve1", 1, 1, tags=["plb_affinity_x"]),
                               guest(202, "pve2", 1, 1)])
    def run(*moves: Move) -> list[str]:
        return verify_plan(together, RuleSet(), Policy(), Plan(tuple(moves), (), (), 0, 0))
    assert run(step(200, "pve1", "pve2"), step(201, "pve1", "pve2"), step(202, "pve2", "pve1")) == []
    assert run(step(200, "pve1", "pve2"), step(202, "pve2", "pve1")) == [
        "step 2 (202 pve2 -> pve1): moves another guest while affinity group 'x' (tag plb_affinity_x) is still split"
    ]
    assert run(step(200, "pve1", "pve2")) == ["end of plan: affinity group 'x' (tag plb_affinity_x) is left split"]


def test_a_plan_whose_figures_after_are_not_its_moves_is_refused() -> None:
    """A plan shows what applying it leaves: figures after that its moves do not make are an error."""
    model = cluster([node("pve1"), node("pve2")], [guest(200, "pve1", 4, 8), guest(201, "pve1", 4, 8)])
    made = plan(model, RuleSet(), Policy())
    assert made.moves and verify_plan(model, RuleSet(), Policy(), made) == []
    unmoved = dataclasses.replace(made, nodes_after=made.nodes_before)  # the moves, but no change shown
    problems = verify_plan(model, RuleSet(), Policy(), unmoved)
    assert problems and all(p.startswith("end of plan: ") and "as the plan says, but its moves leave it" in p
                            for p in problems)
    missing = dataclasses.replace(made, nodes_after=made.nodes_after[1:])
    assert f"end of plan: {made.nodes_after[0].name} has figures before but none after" in verify_plan(
        model, RuleSet(), Policy(), missing)
