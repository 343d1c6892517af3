"""`pvebalance run`: the loop, its HTTP endpoints, hysteresis, cooldowns and the lock, in-process
against a simulator whose clock only the test moves."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from controller.config import Config
from controller.cycle import run_cycle
from controller.loop import Controller
from controller.promql import PromQL
from controller.server import ControllerServer
from planner.model import MoveKind
from pveapi.client import PveClient
from testkit.processes import free_port
from testkit.prometheus import running_prometheus
from tests.controller.conftest import MakeConfig, Watch, demo_rules_broken
from tests.support.sim import RunningSimulator, running_simulator

AUTO = {"automation": "automatic", "hold_time": 0, "cooldown": "1h", "interval": "5m"}
APPLY = {"poll_interval": 5}


_MADE: list[Controller] = []


@pytest.fixture(autouse=True)
def _release_controllers(frozen_sim: RunningSimulator) -> Iterator[None]:
    """Each controller gives its lease back (and stops renewing it) when its test ends, while
    its simulator still runs."""
    yield
    while _MADE:
        _MADE.pop().release()


def _controller(sim: RunningSimulator, config: Config, watch: Watch | None = None) -> Controller:
    promql = PromQL(config.prometheus) if config.prometheus is not None else None
    controller = Controller(config, PveClient(config.proxmox), promql, clock=sim.clock,
                            sleep=watch.sleep if watch is not None else sim.advance)
    _MADE.append(controller)
    return controller


def _metric(controller: Controller, line_start: str) -> float:
    for line in controller.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric line {line_start!r}")


def test_manual_mode_publishes_the_plan_and_never_migrates(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run={"automation": "manual", "webhook_token": "hook-s3cret", "listen": "127.0.0.1:0"})
    controller = _controller(frozen_sim, config)
    server = ControllerServer(("127.0.0.1", 0), controller.endpoints())
    server.start()
    try:
        assert requests.get(server.url + "/plan", timeout=5).status_code == 404  # before the first cycle
        summary = controller.cycle()
        assert summary.result == "planned" and summary.moves > 0
        assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]
        plan = requests.get(server.url + "/plan", timeout=5).json()
        assert len(plan["moves"]) == summary.moves and plan["actionable"] is True
        health = requests.get(server.url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["last_cycle"]["result"] == "planned"
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert 'pvebalance_cycles_total{result="planned"} 1.0' in metrics
        assert f'pvebalance_plan_move_info{{name="{plan["moves"][0]["name"]}"' in metrics
        assert 'pvebalance_imbalance{when="predicted"}' in metrics
        assert "hook-s3cret" not in metrics + str(plan) + health.text
        assert requests.get(server.url + "/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_without_a_webhook_token_the_webhook_is_off(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run={"automation": "manual"})
    server = ControllerServer(("127.0.0.1", 0), _controller(frozen_sim, config).endpoints())
    server.start()
    try:
        answer = requests.post(server.url + "/webhook", json={"alerts": []}, headers={"Authorization": "Bearer "}, timeout=5)
    finally:
        server.stop()
    assert answer.status_code == 403 and "webhook disabled: set run.webhook_token_file" in answer.json()["error"]


def test_the_webhook_needs_the_token_and_starts_a_cycle_at_once(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run={"automation": "manual", "webhook_token": "hook-s3cret", "interval": "1h"})
    controller = _controller(frozen_sim, config)
    server = ControllerServer(("127.0.0.1", 0), controller.endpoints())
    server.start()
    loop = threading.Thread(target=controller.run_forever)
    loop.start()
    alert = {"version": "4", "status": "firing", "receiver": "pvebalance",
             "alerts": [{"status": "firing", "labels": {"alertname": "NodeCpuHigh", "node": "pve1"}}]}
    try:
        _wait(lambda: controller.last is not None)
        assert requests.post(server.url + "/webhook", json=alert, timeout=5).status_code == 401
        wrong = requests.post(server.url + "/webhook", json=alert, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        bad = requests.post(server.url + "/webhook", json={"x": 1}, headers={"Authorization": "Bearer hook-s3cret"}, timeout=5)
        assert bad.status_code == 400 and "alerts list" in bad.json()["error"]
        ok = requests.post(server.url + "/webhook", json=alert, headers={"Authorization": "Bearer hook-s3cret"}, timeout=5)
        assert ok.status_code == 202 and ok.json() == {"triggered": True, "firing": 1}
        _wait(lambda: _metric(controller, 'pvebalance_cycles_total{result="planned"}') == 2)
    finally:
        controller.stop()
        loop.join(timeout=30)
        server.stop()
    assert not loop.is_alive()


def _wait(condition: Callable[[], bool], seconds: float = 30) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_hysteresis_waits_for_the_hold_time_but_not_for_mandatory_moves(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run={**AUTO, "hold_time": "30m"}, apply=APPLY)
    controller = _controller(frozen_sim, config)
    first = controller.cycle()
    assert first.result == "applied" and first.report is not None
    assert {o.move.kind for o in first.report.outcomes} == {MoveKind.MANDATORY}  # web01 leaves web02 only
    frozen_sim.advance(600)
    assert controller.cycle().reason.startswith("imbalance not above the trigger for run.hold_time")
    frozen_sim.advance(1800)
    later = controller.cycle()
    assert later.result == "applied" and later.report is not None
    assert {o.move.kind for o in later.report.outcomes} == {MoveKind.BALANCE}


def test_cooldowns_hold_across_a_restart(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run=AUTO, apply=APPLY)
    before = _controller(frozen_sim, config)
    first = before.cycle()
    assert first.report is not None
    moved = {o.move.vmid for o in first.report.outcomes if o.result == "succeeded"}
    assert moved
    before.release()  # the first instance exits
    restarted = _controller(frozen_sim, config)  # reads the state file the first one left
    frozen_sim.advance(600)
    restarted.cycle()
    plan = restarted.current_plan
    assert plan is not None and not {m["vmid"] for m in plan["moves"]} & moved
    held = {s["vmid"]: s["reason"] for s in plan["skipped"]}
    assert all(held[v].startswith("cooldown: moved") for v in moved)


def test_a_guest_moved_by_hand_is_held_for_its_cooldown(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    """No state file knows about it: the cluster's task list does."""
    config = make_config(frozen_sim, run=AUTO, apply=APPLY)
    client = PveClient(frozen_sim.connection_settings())
    first = run_cycle(client, None, config).plan.moves[0]
    by_hand = next(n.name for n in client.resources().nodes if n.name not in (first.source, first.target))
    client.post(f"/nodes/{first.source}/{first.type}/{first.vmid}/migrate", target=by_hand, online=1)
    frozen_sim.advance(300)
    assert frozen_sim.placement()[first.vmid] == by_hand
    controller = _controller(frozen_sim, config)
    summary = controller.cycle()
    assert summary.report is not None and first.vmid not in {o.move.vmid for o in summary.report.outcomes}
    plan = controller.current_plan
    assert plan is not None
    held = {s["vmid"]: s["reason"] for s in plan["skipped"]}
    assert held[first.vmid].startswith("cooldown: migrated by root@pam!test ") and f"(task on {first.source})" in held[first.vmid]
    frozen_sim.advance(3600)  # its cooldown is over: it may be planned again
    controller.cycle()
    assert controller.current_plan is not None
    assert not {s["vmid"]: s["reason"] for s in controller.current_plan["skipped"]}.get(first.vmid, "").startswith("cooldown")


def test_a_second_controller_refuses_to_migrate_and_says_why(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run=AUTO, apply=APPLY)
    first = _controller(frozen_sim, config)
    assert first.cycle().result == "applied" and first.lock.held
    second = _controller(frozen_sim, config)
    tasks = len(frozen_sim.tasks())
    summary = second.cycle()
    assert summary.result == "skipped" and "another pvebalance controller holds" in summary.reason
    assert "pid " in summary.reason and len(frozen_sim.tasks()) == tasks
    assert _metric(second, "pvebalance_lock_held") == 0 and second.health()[1]["lock_busy"]
    first.release()


@pytest.mark.parametrize("fallback", [False, True])
def test_stale_or_missing_prometheus_data_never_leads_to_a_migration(frozen_sim: RunningSimulator, make_config: MakeConfig, tmp_path: Path, fallback: bool) -> None:
    with running_prometheus(tmp_path / "empty") as prom:
        config = make_config(frozen_sim, prometheus={"url": prom.url}, run={**AUTO, "fallback_to_live": fallback}, apply=APPLY)
        summary = _controller(frozen_sim, config).cycle()
    migrations = [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]
    if fallback:
        assert summary.result == "applied" and migrations
    else:
        assert summary.result == "skipped" and "no recent pve_* samples" in summary.reason and not migrations


def test_prometheus_down_and_api_errors_keep_the_loop_running(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, prometheus={"url": f"http://127.0.0.1:{free_port()}"}, run=AUTO, apply=APPLY)
    controller = _controller(frozen_sim, config)
    down = controller.cycle()
    assert down.result == "skipped" and "unreachable" in down.reason
    frozen_sim.inject_fault({"type": "error", "endpoint": "GET /cluster/resources", "status": 500, "message": "cluster not ready - no quorum?"})
    failed = controller.cycle()
    assert failed.result == "failed" and "no quorum" in failed.reason
    frozen_sim.clear_faults()
    assert controller.cycle().result == "skipped"
    assert _metric(controller, 'pvebalance_cycles_total{result="failed"}') == 1
    assert _metric(controller, 'pvebalance_cycles_total{result="skipped"}') == 2
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]


def test_an_automatic_cycle_counts_migrations_and_their_durations(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run=AUTO, apply=APPLY)
    controller = _controller(frozen_sim, config)
    summary = controller.cycle()
    assert summary.report is not None
    done = summary.report.count("succeeded")
    assert done > 0 and _metric(controller, 'pvebalance_migrations_total{result="succeeded"}') == done
    assert _metric(controller, 'pvebalance_migrations_total{result="started"}') == done
    assert _metric(controller, "pvebalance_migration_duration_seconds_count") == done
    assert _metric(controller, "pvebalance_last_success_timestamp_seconds") > 0


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"type": "error", "endpoint": "GET /cluster/*", "status": 596, "message": "Connection timed out"}, "HTTP 596"),
        ({"type": "error", "endpoint": "GET /cluster/resources", "status": 595, "message": "No route to host"}, "HTTP 595"),
        ({"type": "hang", "endpoint": "GET /cluster/resources", "seconds": 5}, "no answer before the timeout"),
    ],
)
def test_an_unreachable_or_hung_api_fails_the_cycle_not_the_loop(frozen_sim: RunningSimulator, make_config: MakeConfig, fault: dict[str, Any], message: str) -> None:
    config = make_config(frozen_sim, proxmox={"timeout": 1}, run=AUTO, apply=APPLY)
    controller = _controller(frozen_sim, config)
    fault_id = frozen_sim.inject_fault(fault)[0]
    summary = controller.cycle()
    assert summary.result == "failed" and message in summary.reason
    assert controller.health()[1]["last_cycle"]["result"] == "failed"  # /health shows what happened
    frozen_sim.clear_faults(fault_id)
    assert controller.cycle().result == "applied"
    assert _metric(controller, 'pvebalance_cycles_total{result="failed"}') == 1


# Three nodes; 100 and 101 must part (exclude_db), 300 and 301 too (a PVE 9 HA rule). The plan
# moves 100 or 101 first (mandatory), then 300 a -> c (b holds 301).
HA_RECHECK = {
    "name": "ha-recheck", "seed": 1, "migration": {"bandwidth": "1GiB", "overhead_s": 4, "ha_delay_s": 5},
    "nodes": [{"name": n, "cores": 16, "memory": "64GiB", "version": "9.0.10"} for n in ("a", "b", "c")],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True, "content": "images,rootdir", "size": "4TiB"}],
    "ha": {"rules": [{"rule": "ha-apart", "type": "resource-affinity", "affinity": "negative",
                      "resources": ["vm:300", "vm:301"]}]},
    "guests": [
        {"vmid": 100, "node": "a", "cpus": 2, "memory": "4GiB", "storage": "ceph", "tags": ["exclude_db"]},
        {"vmid": 101, "node": "a", "cpus": 2, "memory": "4GiB", "storage": "ceph", "tags": ["exclude_db"]},
        {"vmid": 300, "node": "a", "cpus": 12, "memory": "16GiB", "storage": "ceph", "ha": {"state": "started"},
         "cpu": {"profile": "constant", "level": 0.9}},
        {"vmid": 302, "node": "a", "cpus": 12, "memory": "16GiB", "storage": "ceph", "tags": ["plb_ignore"],
         "cpu": {"profile": "constant", "level": 0.9}},
        {"vmid": 301, "node": "b", "cpus": 2, "memory": "4GiB", "storage": "ceph", "ha": {"state": "started"}},
    ],
}


def test_the_loop_rechecks_each_migration_against_the_cluster_s_ha_rules(make_config: MakeConfig) -> None:
    """While the first migration runs, an admin moves 301 to c: 300 -> c would now break the
    cluster's HA rule `ha-apart`, which only the cycle's rules (not the config file's) know."""
    with running_simulator(HA_RECHECK, time_scale=0) as sim:
        client = PveClient(sim.connection_settings())

        def admin_moves_301_meanwhile(seconds: float) -> None:
            if sim.placement()[301] == "b":
                client.post("/nodes/b/qemu/301/migrate", target="c", online=1)
                while sim.placement()[301] != "c" or [t for t in sim.tasks() if t["id"] == "301" and t["status"] == "running"]:
                    sim.advance(10)
            sim.advance(seconds)

        config = make_config(sim, run=AUTO, apply=APPLY)
        controller = Controller(config, PveClient(config.proxmox), None, clock=sim.clock, sleep=admin_moves_301_meanwhile)
        planned = run_cycle(client, None, config).plan
        first, second = [(m.vmid, m.target) for m in planned.moves][:2]
        assert first[0] in (100, 101) and second == (300, "c")  # the premise: 300 -> c waits for the first
        try:
            with capture_logs() as events:
                summary = controller.cycle()
        finally:
            controller.release()
        placement = sim.placement()
    assert summary.report is not None
    outcome = next(o for o in summary.report.outcomes if o.move.vmid == 300)
    assert outcome.result == "dropped" and "ha-apart" in outcome.detail, outcome
    assert (placement[300], placement[301]) == ("a", "c")  # the HA rule still holds
    assert _metric(controller, 'pvebalance_migrations_total{result="dropped"}') >= 1
    dropped = [e for e in events if e["event"] == "migration.dropped" and e["vmid"] == 300]
    assert dropped and "ha-apart" in dropped[0]["detail"]


def test_random_migration_failures_over_many_cycles_break_nothing(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    """Half the migrations fail, at random (the simulator's seeded draw), over six automatic cycles."""
    config = make_config(frozen_sim, run={**AUTO, "cooldown": "2h"}, apply={**APPLY, "max_consecutive_failures": 10})
    watch = Watch(frozen_sim, PveClient(config.proxmox))
    controller = _controller(frozen_sim, config, watch)
    frozen_sim.inject_fault({"type": "migration_failure", "rate": 0.5, "message": "migration aborted"})
    watch.sample()
    results = []
    for _ in range(6):
        results.append(controller.cycle().result)
        frozen_sim.advance(1800)
        watch.sample()
    assert "failed" not in results  # failed migrations fail moves, not the loop's cycles
    tasks = [t for t in frozen_sim.tasks() if t["type"] in ("qmigrate", "vzmigrate")]
    failed = [t for t in tasks if t.get("exitstatus") not in (None, "OK")]
    assert failed and len(failed) < len(tasks)  # both outcomes happened
    assert watch.problems == []  # every guest once, nothing onto an offline node, no node over its memory
    assert demo_rules_broken(frozen_sim.placement()) == []
    assert watch.moved_within(2 * 3600) == {}
    starts: dict[str, list[int]] = {}
    for task in tasks:
        starts.setdefault(task["id"], []).append(task["starttime"])
    # A failed guest is held like a moved one: never tried again within its cooldown.
    assert all(b - a >= 2 * 3600 for s in starts.values() for a, b in itertools.pairwise(s)), starts
    assert any(len(s) > 1 for s in starts.values())  # ... and is tried again once it is over
    assert _metric(controller, 'pvebalance_migrations_total{result="failed"}') == len(failed)
    assert _metric(controller, 'pvebalance_migrations_total{result="succeeded"}') == len(tasks) - len(failed)


def test_a_token_rejected_mid_run_fails_the_cycle_not_the_loop(frozen_sim: RunningSimulator, make_config: MakeConfig) -> None:
    config = make_config(frozen_sim, run=AUTO, apply=APPLY)
    controller = _controller(frozen_sim, config)
    revoked = frozen_sim.inject_fault({"type": "error", "endpoint": "*", "status": 401, "message": "authentication failure"})[0]
    summary = controller.cycle()
    assert summary.result == "failed" and "authentication failure" in summary.reason
    assert config.proxmox.token_value is not None
    assert config.proxmox.token_value.reveal() not in summary.reason
    assert controller.health()[1]["last_cycle"]["result"] == "failed"
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]
    frozen_sim.clear_faults(revoked)  # the admin restores the token: the next cycle works
    assert controller.cycle().result == "applied"
    assert _metric(controller, 'pvebalance_cycles_total{result="failed"}') == 1
