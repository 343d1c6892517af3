"""Parsing of the three rule sources: the `rules:` block, PVE 9 HA rules and guest tags."""

from typing import Any

import pytest

from planner.policy import GIB
from planner.rules import (
    AffinityRule,
    AntiAffinityRule,
    GuestSelector,
    IgnoreRule,
    MaintenanceRule,
    NodeAffinityRule,
    ReservationRule,
    RuleSet,
    ha_rules,
    load_rules,
    tag_rules,
)
from pveapi.errors import ConfigError
from tests.planner.builders import guest

RULES_YAML = {
    "ignore": [100, {"vmids": [101, 102]}, {"pools": ["backup"]}],
    "anti_affinity": [{"name": "dns", "vmids": [110, 111]}],
    "affinity": [{"name": "app", "pools": ["app"], "strict": False}],
    "node_affinity": [
        {"name": "db", "vmids": [120], "nodes": ["pve1", "pve2"]},
        {"name": "gpu", "vmids": [121], "nodes": {"pve3": 2, "pve1": 1}, "mode": "should"},
        {"name": "not-old", "pools": ["web"], "nodes": ["pve9"], "avoid": True},
    ],
    "maintenance": ["pve4"],
    "reservations": {"pve1": {"cpu_cores": 2, "memory": "8GiB"}},
}


def test_every_section_of_the_rules_block_is_read() -> None:
    rules = load_rules(RULES_YAML, "rules")
    src = "config rules"
    assert rules.ignore == (
        IgnoreRule(GuestSelector(frozenset({100})), src),
        IgnoreRule(GuestSelector(frozenset({101, 102})), src),
        IgnoreRule(GuestSelector(pools=frozenset({"backup"})), src),
    )
    assert rules.anti_affinity == (AntiAffinityRule("dns", GuestSelector(frozenset({110, 111})), src),)
    assert rules.affinity == (AffinityRule("app", GuestSelector(pools=frozenset({"app"})), src, strict=False),)
    db, gpu, avoid = rules.node_affinity
    assert db == NodeAffinityRule("db", GuestSelector(frozenset({120})), (("pve1", 0), ("pve2", 0)), src)
    assert gpu.nodes == (("pve1", 1), ("pve3", 2)) and gpu.strict is False
    assert avoid.negative and avoid.selector.pools == frozenset({"web"})
    assert rules.maintenance == (MaintenanceRule(frozenset({"pve4"}), src),)
    assert rules.reservations == (ReservationRule("pve1", 2.0, 8 * GIB, src),)


def test_an_empty_block_is_an_empty_rule_set() -> None:
    assert load_rules(None, "rules") == RuleSet()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"antiaffinity": []}, "rules: unknown key(s) antiaffinity"),
        ({"ignore": "100"}, "rules.ignore: expected a list of entries"),
        ({"ignore": [42]}, "rules.ignore[0]: expected a VMID (a whole number from 100 to 999999999), got 42"),
        ({"anti_affinity": [{"vmids": [100, 101]}]}, "rules.anti_affinity[0].name: required"),
        ({"anti_affinity": [{"name": "x"}]}, "rules.anti_affinity[0]: name the guests with `vmids"),
        ({"affinity": [{"name": "x", "vmids": [100], "strict": "maybe"}]}, "rules.affinity[0].strict: expected true or false"),
        ({"node_affinity": [{"name": "x", "vmids": [100], "nodes": ["a"], "mode": "may"}]}, "rules.node_affinity[0].mode: expected one of must, should, got 'may'"),
        ({"node_affinity": [{"name": "x", "vmids": [100]}]}, "rules.node_affinity[0].nodes: expected a name or a list"),
        ({"reservations": {"pve1": {"memory": "lots"}}}, "rules.reservations.pve1.memory: expected a size"),
        ({"maintenance": [1]}, "rules.maintenance[0]: expected a name (no spaces, at most 128 characters), got 1"),
    ],
)
def test_bad_rules_give_one_line_naming_the_entry(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_rules(data, "rules")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_ha_rules_translate_node_and_resource_affinity() -> None:
    rules = ha_rules(
        [
            {"rule": "db-nodes", "type": "node-affinity", "resources": "vm:100,ct:101", "nodes": "pve1:2,pve2", "strict": 1},
            {"rule": "prefer", "type": "node-affinity", "resources": "vm:102", "nodes": "pve3"},
            {"rule": "keep-apart", "type": "resource-affinity", "resources": "vm:103,vm:104", "affinity": "negative"},
            {"rule": "together", "type": "resource-affinity", "resources": "vm:105,ct:106", "affinity": "positive"},
            {"rule": "off", "type": "resource-affinity", "resources": "vm:107,vm:108", "affinity": "negative", "disable": 1},
            {"rule": "future", "type": "something-new", "resources": "vm:109"},
        ]
    )
    strict, soft = rules.node_affinity
    assert strict.selector.vmids == frozenset({100, 101})
    assert strict.nodes == (("pve1", 2), ("pve2", 0)) and strict.strict
    assert not soft.strict and soft.source == "HA rule prefer"
    assert [r.name for r in rules.anti_affinity] == ["keep-apart"]
    assert [r.selector.vmids for r in rules.affinity] == [frozenset({105, 106})]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"rule": "r", "type": "node-affinity", "resources": "vm:abc", "nodes": "pve1"}, "resource 'vm:abc' is not of the form"),
        ({"rule": "r", "type": "node-affinity", "resources": "vm:100", "nodes": ""}, "lists no nodes"),
        ({"rule": "r", "type": "node-affinity", "resources": "vm:100", "nodes": "pve1:high"}, "'pve1:high' is not of the form"),
        ({"rule": "r", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "maybe"}, "affinity must be positive or negative"),
        ({"rule": "r", "type": "resource-affinity", "resources": "", "affinity": "negative"}, "lists no resources"),
    ],
)
def test_malformed_ha_rules_are_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ha_rules([entry])
    assert "/cluster/ha/rules rule 'r'" in str(err.value) and message in str(err.value)


def test_proxlb_and_proxbalance_tags_become_rules() -> None:
    guests = [
        guest(100, "pve1", tags=["ignore"])[0],
        guest(101, "pve1", tags=["plb_ignore"])[0],
        guest(107, "pve1", tags=["plb_ignore_backup"])[0],
        guest(102, "pve1", tags=["exclude_dns"])[0],
        guest(103, "pve1", tags=["plb_anti_affinity_dns"])[0],
        guest(104, "pve1", tags=["plb_affinity_app", "prod"])[0],
        guest(105, "pve1", tags=["plb_affinity_app"])[0],
        guest(106, "pve1", tags=["plb_pin_pve2", "plb_pin_pve3"])[0],
    ]
    rules = tag_rules(guests)
    assert [(r.source, r.selector.vmids) for r in rules.ignore] == [
        ("tag ignore", frozenset({100})), ("tag plb_ignore", frozenset({101})), ("tag plb_ignore_backup", frozenset({107}))]
    # both spellings of a group name one group
    assert [(r.name, r.selector.vmids) for r in rules.anti_affinity] == [("dns", frozenset({102, 103}))]
    # move reasons quote the tags the user wrote, in both spellings
    assert rules.anti_affinity[0].source == "tag exclude_dns, plb_anti_affinity_dns"
    assert tag_rules(guests[4:5]).anti_affinity[0].source == "tag plb_anti_affinity_dns"
    assert [(r.name, r.selector.vmids) for r in rules.affinity] == [("app", frozenset({104, 105}))]
    (pin,) = rules.node_affinity
    assert pin.selector.vmids == frozenset({106}) and pin.nodes == (("pve2", 0), ("pve3", 0)) and pin.strict


def test_merge_keeps_every_rule_of_both_sets() -> None:
    a = load_rules({"maintenance": ["pve1"]}, "rules")
    b = ha_rules([{"rule": "x", "type": "resource-affinity", "resources": "vm:100,vm:101", "affinity": "negative"}])
    merged = a.merge(b)
    assert merged.maintenance == a.maintenance and merged.anti_affinity == b.anti_affinity
