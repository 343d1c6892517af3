"""Observing clusters the way they come: maintenance nodes, PVE 8 without HA rules, local
disks found by the API's precondition check, and the datacenter `crs` option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import load_config
from controller.cycle import run_cycle
from controller.observe import crs_auto_rebalance, observe
from planner.model import MoveKind
from pveapi.client import PveClient
from simulator import scenario as scenarios
from tests.controller.conftest import write_config
from tests.support.sim import running_simulator


def _demo(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    data.update(changes)
    return data


def test_a_node_in_ha_maintenance_is_evacuated_first(tmp_path: Path) -> None:
    data = _demo()
    data["nodes"][3]["maintenance"] = True  # pve4
    with running_simulator(data, time_scale=0) as sim:
        config = load_config(write_config(tmp_path, sim))
        cycle = run_cycle(PveClient(config.proxmox), None, config)
    assert cycle.model.maintenance == {"pve4"}
    leaving = [m for m in cycle.plan.moves if m.source == "pve4"]
    assert leaving and all(m.kind is MoveKind.MANDATORY for m in leaving)
    assert not [m for m in cycle.plan.moves if m.target == "pve4"]
    kinds = [m.kind for m in cycle.plan.moves]
    assert kinds == sorted(kinds, key=lambda k: k is not MoveKind.MANDATORY)  # mandatory moves first


def test_pve8_without_ha_rules_plans_normally(tmp_path: Path) -> None:
    data = _demo()
    for node in data["nodes"]:
        node["version"] = "8.4.14"
    with running_simulator(data, time_scale=0) as sim:
        config = load_config(write_config(tmp_path, sim))
        observation = observe(PveClient(config.proxmox), None)
    assert observation.ha_rule_entries == () and observation.warnings == ()
    assert observation.leave_alone == {}


def test_local_disks_found_by_the_precondition_check_keep_a_guest_in_place(tmp_path: Path) -> None:
    rule = {"node_affinity": [{"name": "build-on-pve5", "vmids": [130], "nodes": ["pve5"]}]}
    with running_simulator("demo", time_scale=0) as sim:
        config = load_config(write_config(tmp_path, sim, rules=rule))
        cycle = run_cycle(PveClient(config.proxmox), None, config)
        allowed = load_config(write_config(tmp_path, sim, rules=rule, policy={"allow_local_disks": True}))
        copying = run_cycle(PveClient(allowed.proxmox), None, allowed)
    assert 130 in cycle.model.pinned_local and not [m for m in cycle.plan.moves if m.vmid == 130]
    reason = {s.vmid: s.reason for s in cycle.plan.skipped}[130]
    assert reason == "local disks (local-lvm:vm-130-disk-0); set policy.allow_local_disks: true to copy them"
    assert cycle.precondition_calls <= 2 * len(cycle.plan.moves) + 1
    assert [m.target for m in copying.plan.moves if m.vmid == 130] == ["pve5"]


@pytest.mark.parametrize(
    ("crs", "on"),
    [
        ("ha=dynamic,ha-auto-rebalance=1", True),
        ({"ha": "dynamic", "ha-auto-rebalance": 1}, True),
        ("ha=static,ha-rebalance-on-start=1", False),
        ({"ha": "static"}, False),
        (None, False),
    ],
)
def test_crs_auto_rebalance_in_both_shapes(crs: object, on: bool) -> None:
    assert crs_auto_rebalance(crs) is on
