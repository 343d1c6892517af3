"""PVE 9's HA node maintenance (`ha-manager crm-command node-maintenance enable NODE`, set in
the simulator through its admin API): the controller evacuates the node and places nothing there."""

from __future__ import annotations

from collections.abc import Callable

from controller.config import Config
from controller.cycle import run_cycle
from controller.executor import Executor
from pveapi.client import PveClient
from tests.controller.conftest import Watch, demo_rules_broken
from tests.support.sim import RunningSimulator


def test_a_node_in_ha_maintenance_is_evacuated_and_receives_nothing_until_maintenance_ends(
    frozen_sim: RunningSimulator, make_config: Callable[..., Config]
) -> None:
    config = make_config(frozen_sim, apply={"poll_interval": 5, "max_in_flight": 2, "max_in_flight_per_node": 1})
    client = PveClient(config.proxmox)
    assert any(m.target == "pve5" for m in run_cycle(client, None, config).plan.moves)  # the emptiest node

    frozen_sim.set_node_maintenance("pve5", True)
    frozen_sim.set_node_maintenance("pve4", True)
    pve4 = client.resources().node("pve4")
    assert pve4 is not None and pve4.hastate == "maintenance"
    cycle = run_cycle(client, None, config)
    plan = cycle.plan
    assert {n.name: n.state for n in plan.nodes_after if n.name in ("pve4", "pve5")} == {
        "pve4": "maintenance", "pve5": "maintenance"}
    assert all(m.target not in ("pve4", "pve5") for m in plan.moves), plan.moves
    before = frozen_sim.placement()
    held = {s.vmid for s in plan.skipped}
    leaving = {v for v, n in before.items() if n in ("pve4", "pve5")} - held
    assert leaving and leaving <= {m.vmid for m in plan.moves if m.kind.value == "mandatory"}, (leaving, plan.moves)

    watch = Watch(frozen_sim, client)
    report = Executor(client, cycle.rules, config.policy, config.apply, sleep=watch.sleep).apply(plan, cycle.model)
    assert report.count("failed") == 0, report.outcomes
    after = frozen_sim.placement()
    assert {v for v, n in after.items() if n in ("pve4", "pve5")} <= held
    assert watch.problems == [] and demo_rules_broken(after) == []

    # Maintenance off: the node takes guests again.
    frozen_sim.set_node_maintenance("pve5", False)
    frozen_sim.set_node_maintenance("pve4", False)
    assert any(m.target in ("pve4", "pve5") for m in run_cycle(client, None, config).plan.moves)
