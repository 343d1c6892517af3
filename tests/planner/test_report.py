"""The readable table and the JSON plan (docs/plan-schema.md)."""

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from planner.model import Cause, MoveKind, Plan
from planner.policy import Policy
from planner.report import SCHEMA_VERSION, plan_from_dict, plan_to_dict, render_table
from pveapi.errors import ConfigError
from tests.planner.builders import checked_plan, cluster, guest, node

THREE = [node("pve1"), node("pve2"), node("pve3")]


@pytest.fixture(scope="module")
def sample() -> Plan:
    guests = [guest(100 + i, "pve1", 2, 6) for i in range(6)] + [
        guest(200, "pve2", 1, 2, tags=["exclude_dns"], type="lxc"),
        guest(201, "pve2", 1, 2, tags=["exclude_dns"]),
        guest(300, "pve3", 1, 2, lock="backup"),
    ]
    return checked_plan(cluster(THREE, guests), policy=Policy(trigger=0.0))


def test_the_table_shows_moves_nodes_imbalance_skipped_and_source(sample: Plan) -> None:
    text = render_table(sample)
    assert text.startswith("Data: window 1h; figures from prometheus: 9 guests")
    assert f"Imbalance: {sample.imbalance_before:.3f} -> {sample.imbalance_after:.3f}" in text
    first = sample.moves[0]
    assert first.kind is MoveKind.MANDATORY
    row = next(line for line in text.splitlines() if line.strip().startswith("1 "))
    assert f"{first.vmid} {first.name}" in row and f"{first.source} -> {first.target}" in row
    assert "mandatory" in row and first.reason in row
    assert "pve1  online" in text and "->" in text.split("Nodes (before -> after):")[1]
    assert "300 g300: locked (backup)" in text


def test_json_round_trips_exactly(sample: Plan) -> None:
    data = plan_to_dict(sample)
    assert data["schema_version"] == SCHEMA_VERSION
    assert [m["vmid"] for m in data["moves"]] == [m.vmid for m in sample.moves]
    assert set(data["moves"][0]) >= {"vmid", "name", "type", "source", "target", "reason", "kind"}
    assert plan_from_dict(json.loads(json.dumps(data))) == sample


def _broken(sample: Plan, mutate: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = copy.deepcopy(plan_to_dict(sample))
    mutate(data)
    return data


def test_an_advisor_plan_saved_before_kinds_came_from_causes_still_loads(sample: Plan) -> None:
    # Its repairs were written as mandatory with cause balance; they are read as balance moves.
    data = plan_to_dict(sample)
    move = next(m for m in data["moves"] if m["cause"] == "balance")
    move["kind"] = "mandatory"
    loaded = plan_from_dict(data)
    assert next(m for m in loaded.moves if m.vmid == move["vmid"]).kind is MoveKind.BALANCE


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema_version=99), "plan: schema_version 99 is not supported"),
        (lambda d: d.pop("moves"), "plan.moves: expected a list, got NoneType"),
        (lambda d: d["moves"][0].update(type="docker"), "plan.moves[0].type: expected qemu or lxc, got 'docker'"),
        (lambda d: d["moves"][0].update(kind="urgent"), "plan.moves[0].kind: expected mandatory or balance"),
        (lambda d: d["moves"][0].update(kind="balance" if d["moves"][0]["kind"] == "mandatory" else "mandatory"),
         "plan.moves[0].kind: balance does not go with cause 'repair', which is mandatory"),
        (lambda d: d["moves"][0].update(vmid="100"), "plan.moves[0].vmid: expected a whole number"),
        (lambda d: d["moves"][0].update(target="pve9"), "plan.moves[0].target: node 'pve9' is not among the plan's nodes"),
        (lambda d: d["moves"][0].update(target=d["moves"][0]["source"]), "plan.moves[0]: source and target are both"),
        (lambda d: d["nodes"][0].update(state="sleeping"), "plan.nodes[0].state: expected online, maintenance or offline"),
        (lambda d: d["nodes"][1].pop("after"), "plan.nodes[1].after: expected an object"),
        (lambda d: d["imbalance"].update(after=None), "plan.imbalance.after: expected a number"),
        (lambda d: d["skipped"].append("x"), "plan.skipped[1]: expected an object"),
        (lambda d: d.update(problems=[1]), "plan.problems: expected a list of strings"),
    ],
)
def test_a_bad_saved_plan_is_refused_with_one_line(sample: Plan, mutate: Callable[[dict[str, Any]], object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_from_dict(_broken(sample, mutate))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_something_that_is_not_a_plan_is_refused() -> None:
    with pytest.raises(ConfigError, match="plan: expected an object, got list - is this a pvebalance plan"):
        plan_from_dict([])


def test_each_move_says_where_its_figures_came_from() -> None:
    guests = [guest(100 + i, "pve1", 2, 6) for i in range(4)]
    model = cluster(THREE, guests)
    live = dataclasses.replace(model, guest_usage={
        v: dataclasses.replace(u, source="live") if v == 100 else u for v, u in model.guest_usage.items()})
    result = checked_plan(live, policy=Policy(trigger=0.0))
    assert {m.vmid: m.usage_source for m in result.moves}[100] == "live"
    assert result.sources == {"live": 1, "prometheus": 3}
    data = plan_to_dict(result)
    assert plan_from_dict(data) == result
    data["moves"][0]["usage_source"] = "guess"
    with pytest.raises(ConfigError, match=r"plan.moves\[0\].usage_source: expected prometheus or live, got 'guess'"):
        plan_from_dict(data)


def test_json_carries_each_move_s_cause_and_a_bad_cause_is_refused(sample: Plan) -> None:
    data = plan_to_dict(sample)
    assert all(m["cause"] in {c.value for c in Cause} and isinstance(m["details"], dict) for m in data["moves"])
    assert data["search"]["effort"] in ("off", "quick", "thorough")
    data["moves"][0]["cause"] = "because"
    with pytest.raises(ConfigError, match=r"plan.moves\[0\].cause: expected one of evacuation, repair"):
        plan_from_dict(data)
