"""Random and hostile values (NaN, infinity, huge, negative, wrong types, deep nesting) through
every config reader (controller config, policy, rules) and the inventory reader: each gives
a valid value or one line of ConfigError / ApiError, never another exception."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from controller.config import _APPLY_KEYS, _PROM_KEYS, _RUN_KEYS, parse_config
from planner.policy import Policy
from planner.rules import load_rules
from pveapi.errors import ApiError, ConfigError
from pveapi.inventory import check_consistent, parse_resources

PROXMOX = {"host": "pve1.example.com", "user": "balancer@pve", "token_name": "t", "token_value": "x"}
POLICY_KEYS = sorted(f.name for f in fields(Policy))
RULE_SECTIONS = ("ignore", "anti_affinity", "affinity", "node_affinity", "maintenance", "reservations")
RESOURCE_KEYS = ("vmid", "node", "name", "status", "maxcpu", "cpu", "maxmem", "mem", "disk", "maxdisk", "uptime",
                 "netin", "netout", "template", "tags", "pool", "lock", "hastate", "type", "level", "id")


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**400, -1, 0, 2**64, True, False, None]),
    st.integers(),
    st.text(max_size=12),
    st.sampled_from(["8G", "1e400", "NaN", "Infinity", "-5m", ".inf", "quantile(1.2.3)", "999999999999", "https://h:1/"]),
)
hostile = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6,
) | st.builds(_nested, st.integers(min_value=50, max_value=3000))


def _one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and len(text) < 600, text


def _all_finite(value: Any, seen: int = 0) -> None:
    """Every number a reader returned is finite (dataclasses, mappings and tuples walked)."""
    if isinstance(value, float):
        assert math.isfinite(value), value
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            _all_finite(getattr(value, f.name))
    elif isinstance(value, (tuple, list, frozenset)):
        for item in value:
            _all_finite(item)
    elif hasattr(value, "items"):
        for item in value.values():
            _all_finite(item)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(block=st.sampled_from(["apply", "run", "prometheus", "proxmox"]), key=st.data(), value=hostile)
def test_controller_config_values(block: str, key: st.DataObject, value: Any) -> None:
    keys = {"apply": _APPLY_KEYS, "run": _RUN_KEYS, "prometheus": _PROM_KEYS, "proxmox": set(PROXMOX) | {"timeout", "verify_ssl"}}
    name = key.draw(st.sampled_from(sorted(keys[block])))
    base = {"prometheus": {"url": "http://prom:9090"}, "proxmox": dict(PROXMOX)}
    data: dict[str, Any] = {**base, block: {**base.get(block, {}), name: value}}
    try:
        config = parse_config(data, "c.yaml", env={})
    except ConfigError as error:
        _one_line(error)
        return
    _all_finite(config)


@SETTINGS
@given(key=st.sampled_from(POLICY_KEYS), value=hostile)
@example(key="node_headroom", value={"": {"\n": 0.0}})  # a key holding a line break: still one line
def test_policy_values(key: str, value: Any) -> None:
    try:
        policy = Policy.from_mapping({key: value}, "policy")
    except ConfigError as error:
        _one_line(error)
        return
    _all_finite(policy)


@SETTINGS
@given(section=st.sampled_from(RULE_SECTIONS), value=hostile, wrap=st.booleans())
def test_rule_values(section: str, value: Any, wrap: bool) -> None:
    entry = {"name": "r", "vmids": value, "nodes": ["pve1"]} if wrap and section != "reservations" else value
    data = {section: {"pve1": {"cpu_cores": value}} if wrap and section == "reservations" else [entry] if wrap else entry}
    try:
        rules = load_rules(data, "rules")
    except ConfigError as error:
        _one_line(error)
        return
    _all_finite(rules)


def _resources() -> list[dict[str, Any]]:
    return [
        {"type": "node", "id": "node/pve1", "node": "pve1", "status": "online", "maxcpu": 8, "cpu": 0.2,
         "maxmem": 64 * 2**30, "mem": 8 * 2**30},
        {"type": "qemu", "id": "qemu/100", "vmid": 100, "node": "pve1", "name": "a", "status": "running",
         "maxcpu": 2, "cpu": 0.5, "maxmem": 4 * 2**30, "mem": 2**30, "tags": "web", "template": 0},
        {"type": "lxc", "id": "lxc/101", "vmid": 101, "node": "pve1", "status": "stopped", "maxmem": 2**30},
        {"type": "storage", "id": "storage/pve1/local", "storage": "local", "node": "pve1", "shared": 0},
    ]


@SETTINGS
@given(index=st.integers(min_value=0, max_value=3), key=st.sampled_from(RESOURCE_KEYS), value=hostile)
def test_inventory_values(index: int, key: str, value: Any) -> None:
    entries = _resources()
    entries[index][key] = value
    try:
        inventory = check_consistent(parse_resources(entries))
    except ApiError as error:
        _one_line(error)
        return
    _all_finite(inventory)
    assert all(g.mem >= 0 and g.maxmem >= 0 and g.node in {n.name for n in inventory.nodes} for g in inventory.guests)


@SETTINGS
@given(value=hostile)
def test_the_whole_inventory_answer(value: Any) -> None:
    try:
        check_consistent(parse_resources(value))
    except ApiError as error:
        _one_line(error)
