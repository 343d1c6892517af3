"""Properties on random clusters: every plan is safe at every step, never makes a cluster
less balanced without a mandatory reason, respects its budgets and is deterministic."""

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.constraints import Constraints
from planner.framework import plan
from planner.model import Cause, ClusterModel, MoveKind
from planner.policy import Policy
from planner.rules import RuleSet, ha_rules, load_rules
from planner.verify import verify_plan
from tests.planner.builders import cluster, guest, node

TAGS = ["exclude_a", "plb_anti_affinity_b", "plb_affinity_c", "plb_pin_n0", "plb_pin_n1", "ignore", "prod"]


@st.composite
def clusters(draw: st.DrawFn) -> ClusterModel:
    count = draw(st.integers(2, 6))
    nodes = [
        node(f"n{i}", cpus=draw(st.sampled_from([4, 8, 16])), mem_gib=draw(st.sampled_from([16, 32, 64])),
             online=i == 0 or draw(st.integers(0, 9)) > 0)
        for i in range(count)
    ]
    guests = []
    for vmid in range(100, 100 + draw(st.integers(0, 24))):
        guests.append(
            guest(
                vmid,
                f"n{draw(st.integers(0, count - 1))}",
                cpu=draw(st.floats(0, 4)),
                mem_gib=draw(st.floats(0.25, 12)),
                type=draw(st.sampled_from(["qemu", "lxc"])),
                status=draw(st.sampled_from(["running"] * 8 + ["stopped"])),
                tags=draw(st.lists(st.sampled_from(TAGS), max_size=2)),
                lock=draw(st.sampled_from([None] * 15 + ["backup"])),
                vcpus=draw(st.sampled_from([1, 2, 4, 8])),
                pool=draw(st.sampled_from([None, None, "p1"])),
            )
        )
    maintenance = draw(st.lists(st.sampled_from([n.name for n in nodes]), max_size=1))
    pinned = draw(st.lists(st.sampled_from([g.vmid for g, _ in guests]), max_size=3)) if guests else []
    return cluster(nodes, guests, maintenance=maintenance, pinned_local=pinned, overhead_gib=draw(st.floats(0, 2)))


policies = st.builds(
    Policy,
    cpu_weight=st.sampled_from([0.0, 0.5, 1.0]),
    memory_weight=st.just(0.5),
    trigger=st.sampled_from([0.0, 0.05, 0.2]),
    min_gain=st.sampled_from([0.0, 0.02]),
    max_moves=st.integers(0, 8),
    max_moves_per_node=st.integers(1, 4),
    cpu_overcommit=st.sampled_from([1.0, 4.0]),
    max_copy_per_node=st.sampled_from([8 * 1024**3, 128 * 1024**3]),
    # The search is what makes plans slow, not what makes them safe: every effort level goes
    # through the same gate and the same checks, so the quick one stands for the search here.
    search=st.sampled_from(["off", "quick"]),
)


def ha_pair(model: ClusterModel) -> RuleSet:
    """An HA negative resource-affinity rule on the first two guests, when there are two."""
    vmids = [g.vmid for g in model.guests][:2]
    if len(vmids) < 2:
        return RuleSet()
    return ha_rules([{"rule": "r", "type": "resource-affinity", "resources": f"vm:{vmids[0]},vm:{vmids[1]}", "affinity": "negative"}])


@st.composite
def rule_blocks(draw: st.DrawFn, model: ClusterModel) -> RuleSet:
    """A random `rules:` block over the model's guests and nodes, pools included."""
    vmids = [g.vmid for g in model.guests]
    nodes = [n.name for n in model.nodes]
    some = st.lists(st.sampled_from(vmids), min_size=2, max_size=4, unique=True) if vmids else st.just([])
    block = {
        "anti_affinity": [{"name": "a", "vmids": draw(some)}] if len(vmids) >= 2 and draw(st.booleans()) else [],
        "affinity": [{"name": "t", "vmids": draw(some)[:2]}] if len(vmids) >= 2 and draw(st.booleans()) else [],
        "node_affinity": [
            {"name": "n", "pools": ["p1"], "nodes": draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=2)),
             "mode": draw(st.sampled_from(["must", "should"]))}
        ] if draw(st.booleans()) else [],
        "reservations": {draw(st.sampled_from(nodes)): {"memory": "4GiB", "cpu_cores": 1}} if draw(st.booleans()) else {},
        "maintenance": draw(st.lists(st.sampled_from(nodes), max_size=1)),
    }
    return load_rules(block, "rules").merge(ha_pair(model))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.data(), clusters(), policies)
def test_every_step_of_every_plan_is_within_limits_and_rules(data: st.DataObject, model: ClusterModel, policy: Policy) -> None:
    rules = data.draw(rule_blocks(model))
    result = plan(model, rules, policy)
    assert verify_plan(model, rules, policy, result) == []
    online = {n.name for n in result.nodes_after if n.state == "online"}
    skipped = {s.vmid for s in result.skipped}
    assert all(m.target in online and m.vmid not in skipped for m in result.moves)
    kinds = [m.kind for m in result.moves]
    assert kinds == sorted(kinds, key=lambda kind: kind is not MoveKind.MANDATORY)  # mandatory moves first


@SETTINGS
@given(clusters(), policies)
def test_without_mandatory_moves_the_imbalance_never_gets_worse(model: ClusterModel, policy: Policy) -> None:
    result = plan(model, RuleSet(), policy)
    if not any(m.kind is MoveKind.MANDATORY for m in result.moves):
        assert result.imbalance_after <= result.imbalance_before + 1e-9


@SETTINGS
@given(clusters(), policies)
def test_budgets_hold_and_plans_are_deterministic(model: ClusterModel, policy: Policy) -> None:
    result = plan(model, RuleSet(), policy)
    balance = [m for m in result.moves if m.kind is MoveKind.BALANCE]
    assert len(balance) <= policy.max_moves
    counted = [m for m in balance if m.cause is not Cause.RELIEF]  # relief is limited by cost alone
    per_node = Counter([m.source for m in counted] + [m.target for m in counted])
    assert all(count <= policy.max_moves_per_node for count in per_node.values())
    copied: Counter[str] = Counter()
    for m in balance:
        copied.update({m.source: m.copy_bytes, m.target: m.copy_bytes})
    assert all(total <= policy.max_copy_per_node for total in copied.values())
    assert plan(model, RuleSet(), policy) == result


# More examples than the others: the case it was written for (a guest evacuated, balanced on,
# and that balancing step left out) was found by the one run of 1,500 examples made on the code
# before the fix; 150 examples did not find it.
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), clusters(), policies)
def test_every_guest_left_on_a_maintenance_node_is_accounted_for(data: st.DataObject, model: ClusterModel,
                                                                 policy: Policy) -> None:
    # A guest the plan leaves on a node in maintenance is skipped (template, locked, ...) or named
    # in a problem with the reason, its own or its rule group's: never silently left behind.
    rules = data.draw(rule_blocks(model))
    result = plan(model, rules, policy)
    maintenance = {n.name for n in result.nodes_after if n.state == "maintenance"}
    where = {g.vmid: g.node for g in model.guests} | {m.vmid: m.target for m in result.moves}
    skipped = {s.vmid for s in result.skipped}
    left = [v for v, n in where.items() if n in maintenance and v not in skipped]
    constraints = Constraints(model, rules, policy)
    groups = [*constraints.apart, *constraints.together]

    def named(vmid: int) -> bool:  # in its own problem, or in the problem of a rule group it is in
        labels = [g.label for g in groups if vmid in g.members]
        return any(p.startswith(f"guest {vmid} ") or any(p.startswith(label) for label in labels) for p in result.problems)

    assert all(named(v) for v in left), ([v for v in left if not named(v)], result.problems)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), policies)
def test_a_plan_that_balanced_says_once_why_balancing_stopped(model: ClusterModel, policy: Policy) -> None:
    # Also when greedy's plan was replayed with one migration per guest: balancing resumes with
    # the budget the saved moves left, so the reason it gives is the final plan's, not greedy's.
    result = plan(model, RuleSet(), policy)
    balanced = not any(n.endswith("no balancing moves") for n in result.notes)
    stopped = [n for n in result.notes if n.startswith("balancing stopped")]
    assert len(stopped) == (1 if balanced else 0), result.notes
