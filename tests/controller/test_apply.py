"""Carrying out plans on the simulated cluster, with faults; invariants checked at every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.config import Config
from controller.cycle import Cycle, run_cycle
from controller.executor import ApplyReport, Executor
from pveapi.client import PveClient
from tests.controller.conftest import MakeConfig, Watch, demo_rules_broken
from tests.support.sim import RunningSimulator

FAST = {"apply": {"poll_interval": 5, "max_in_flight": 2, "max_in_flight_per_node": 1}}


def _apply(sim: RunningSimulator, config: Config, before_poll: Callable[[Watch], None] = lambda w: None,
           **executor: Any) -> tuple[Cycle, ApplyReport, Watch]:
    client = PveClient(config.proxmox)
    cycle = run_cycle(client, None, config)
    watch = Watch(sim, client)
    watch.sample()

    def sleep(seconds: float) -> None:
        before_poll(watch)
        watch.sleep(seconds)

    report = Executor(client, cycle.rules, config.policy, config.apply, sleep=sleep, **executor).apply(cycle.plan, cycle.model)
    watch.sample()
    return cycle, report, watch


def test_a_plan_is_carried_out_in_order_and_every_step_is_safe(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, **FAST)
    cycle, report, watch = _apply(frozen_sim, config)
    assert cycle.plan.moves and report.count("succeeded") == len(cycle.plan.moves), report.outcomes
    placement = frozen_sim.placement()
    assert all(placement[m.vmid] == m.target for m in cycle.plan.moves)
    assert watch.problems == [] and watch.samples > len(cycle.plan.moves)
    assert demo_rules_broken(placement) == []
    assert len({placement[100], placement[101], placement[102]}) == 3  # anti-affinity 'web' repaired
    assert placement[111] == "pve2" and placement[140] == "pve4"  # ignored and locked guests stay


def test_failed_migrations_are_recorded_and_never_retried(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, **FAST)
    first = run_cycle(PveClient(config.proxmox), None, config).plan.moves[0]
    frozen_sim.inject_fault({"type": "migration_failure", "vmids": [first.vmid], "message": "migration aborted"})
    cycle, report, watch = _apply(frozen_sim, config)
    failed = [o for o in report.outcomes if o.result == "failed"]
    assert [o.move.vmid for o in failed] == [first.vmid] and "migration aborted" in failed[0].detail
    assert frozen_sim.placement()[first.vmid] == first.source
    attempts = [t for t in frozen_sim.tasks() if t["type"] == "qmigrate" and t["id"] == str(first.vmid)]
    assert len(attempts) == 1
    assert report.count("succeeded") == len(cycle.plan.moves) - 1 or report.count("dropped")
    assert watch.problems == []


def test_consecutive_failures_stop_the_run(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, apply={"poll_interval": 5, "max_consecutive_failures": 2, "max_in_flight": 1})
    frozen_sim.inject_fault({"type": "migration_failure", "rate": 1})
    cycle, report, watch = _apply(frozen_sim, config)
    assert report.count("failed") == 2 and report.count("succeeded") == 0
    assert report.count("not_started") == len(cycle.plan.moves) - 2
    assert report.stopped is not None and "2 migrations failed in a row" in report.stopped
    assert watch.problems == []


def test_a_node_going_offline_mid_plan_drops_the_moves_to_it(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, **FAST)
    target = run_cycle(PveClient(config.proxmox), None, config).plan.moves[-1].target
    taken: list[str] = []

    def node_fails(watch: Watch) -> None:
        if not taken:
            frozen_sim.set_node_online(target, False)
            taken.append(target)

    # The executor's clock is the simulator's: a migration caught by its target going offline is
    # timed out in simulated time (apply.task_timeout), not after half an hour of real time.
    cycle, report, watch = _apply(frozen_sim, config, node_fails, clock=frozen_sim.clock)
    to_offline = [o for o in report.outcomes if o.move.target == target]
    assert to_offline and all(o.result in ("dropped", "failed") for o in to_offline[1:])
    assert any(f"target {target} is offline" in o.detail for o in to_offline)
    placement = frozen_sim.placement()
    assert demo_rules_broken(placement) == [] and watch.problems == []


def test_a_guest_moved_or_locked_by_someone_else_is_dropped(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, **FAST)
    plan = run_cycle(PveClient(config.proxmox), None, config).plan
    other = plan.moves[-1]
    client = PveClient(config.proxmox)
    done: list[str] = []

    def admin_moves_it(watch: Watch) -> None:
        if not done:  # an admin migrates the last planned guest by hand, elsewhere
            elsewhere = next(n.name for n in client.resources().online_nodes if n.name not in (other.source, other.target))
            # as an admin would: a running container moves by restart, a VM live (the plan, and
            # so which guest is last, follows the demo's diurnal load at the hour the test runs)
            how = {"restart": 1} if other.type == "lxc" else {"online": 1}
            client.post(f"/nodes/{other.source}/{other.type}/{other.vmid}/migrate", target=elsewhere, **how)
            done.append(elsewhere)

    cycle, report, watch = _apply(frozen_sim, config, admin_moves_it)
    outcome = next(o for o in report.outcomes if o.move.vmid == other.vmid)
    assert outcome.result == "dropped"
    assert "locked (migrate)" in outcome.detail or f"is on {done[0]} now" in outcome.detail
    assert watch.problems == []


def test_api_errors_and_a_hung_call_while_polling_do_not_lose_migrations(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, proxmox={"timeout": 1}, **FAST)
    frozen_sim.inject_fault([
        {"type": "error", "endpoint": "GET /nodes/{node}/tasks/{upid}/status", "status": 500, "message": "proxy error", "count": 2},
        {"type": "error", "endpoint": "GET /nodes/{node}/tasks/{upid}/status", "status": 595, "message": "No route to host", "count": 2},
        {"type": "error", "endpoint": "GET /nodes/{node}/tasks/{upid}/status", "status": 596, "message": "Connection timed out", "count": 2},
        {"type": "hang", "endpoint": "GET /nodes/{node}/tasks/{upid}/status", "seconds": 3, "count": 1},
    ])
    cycle, report, watch = _apply(frozen_sim, config)
    assert report.count("succeeded") == len(cycle.plan.moves), [o.detail for o in report.outcomes]
    assert watch.problems == []


def test_ha_guests_move_through_ha(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, rules={"node_affinity": [{"name": "ha-to-pve5", "vmids": [122], "nodes": ["pve5"]}]},
                         policy={"max_moves": 0}, **FAST)
    cycle, report, watch = _apply(frozen_sim, config)
    ha_move = next(o for o in report.outcomes if o.move.vmid == 122)
    assert ha_move.result == "succeeded" and ha_move.detail == "HA moved it"
    assert frozen_sim.placement()[122] == "pve5"
    kinds = {t["type"] for t in frozen_sim.tasks() if t["id"] == "122"}
    assert kinds == {"hamigrate", "qmigrate"}
    assert watch.problems == []


def test_a_failed_ha_migration_is_seen_as_failed(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, rules={"node_affinity": [{"name": "ha-to-pve5", "vmids": [122], "nodes": ["pve5"]}]},
                         policy={"max_moves": 0}, **FAST)
    frozen_sim.inject_fault({"type": "migration_failure", "vmids": [122], "message": "migration problems"})
    cycle, report, watch = _apply(frozen_sim, config)
    ha_move = next(o for o in report.outcomes if o.move.vmid == 122)
    assert ha_move.result == "failed" and "migration problems" in ha_move.detail
    assert frozen_sim.placement()[122] == "pve1"


def test_dry_run_checks_every_move_and_migrates_nothing(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, **FAST)
    before = frozen_sim.placement()
    cycle, report, watch = _apply(frozen_sim, config, dry_run=True)
    assert report.count("succeeded") == len(cycle.plan.moves) and frozen_sim.placement() == before
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]


@pytest.mark.parametrize("skew", [0, 3600], ids=["clock-right", "controller-clock-1h-ahead"])
def test_a_migrate_request_that_times_out_is_followed_to_its_task(frozen_sim: RunningSimulator, make_config: MakeConfig, skew: int) -> None:
    """The request reached PVE but the answer did not reach us: the migration runs anyway. The
    task is looked for by the node's clock, so a controller clock that is off does not miss it."""
    config = make_config(frozen_sim, proxmox={"timeout": 1}, apply={"poll_interval": 5, "max_in_flight": 1},
                         policy={"max_moves": 1})
    frozen_sim.inject_fault({"type": "hang", "endpoint": "POST /nodes/{node}/qemu/{vmid}/migrate", "seconds": 2, "count": 1})
    cycle, report, watch = _apply(frozen_sim, config, clock=lambda: frozen_sim.clock() + skew)
    first = report.outcomes[0]
    assert first.result == "succeeded" and first.upid is not None and first.upid.startswith("UPID:")
    assert frozen_sim.placement()[first.move.vmid] == first.move.target
    attempts = [t for t in frozen_sim.tasks() if t["id"] == str(first.move.vmid) and t["type"] == "qmigrate"]
    assert len(attempts) == 1 and watch.problems == []
