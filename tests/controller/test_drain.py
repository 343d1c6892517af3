"""Drain and return (`pvebalance drain|undrain NODE`) on the simulated demo cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.cli import main
from controller.config import Config
from controller.cycle import run_cycle
from controller.drain import drain_node, undrain_node
from controller.drainstate import DrainState
from controller.executor import Executor
from planner.model import Plan
from planner.rules import RuleSet
from pveapi.client import PveClient
from pveapi.errors import ConfigError
from tests.controller.conftest import Watch, demo_rules_broken, write_config
from tests.support.sim import RunningSimulator, running_simulator

ROOT = Path(__file__).resolve().parents[2]
FAST = {"apply": {"poll_interval": 5, "max_in_flight": 2, "max_in_flight_per_node": 1}}
STAYS_ON_PVE3 = {130, 131, 132}  # local disks, pinned to pve3, a template


def _executor(client: PveClient, config: Config, watch: Watch, dry_run: bool = False) -> Callable[[RuleSet, Plan], Executor]:
    return lambda rules, plan: Executor(client, rules, config.policy, config.apply, sleep=watch.sleep, dry_run=dry_run)


def test_drain_then_undrain_returns_every_guest_that_can_and_says_why_for_the_others(
    frozen_sim: RunningSimulator, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(frozen_sim, **FAST)
    client = PveClient(config.proxmox)
    watch = Watch(frozen_sim, client)
    before = frozen_sim.placement()
    on_pve3 = {v for v, n in before.items() if n == "pve3"}

    drained = drain_node("pve3", config, client, None, _executor(client, config, watch))
    placement = frozen_sim.placement()
    assert drained.report is not None
    assert drained.report.count("failed") == 0, drained.report.outcomes
    assert {v for v, n in placement.items() if n == "pve3"} == STAYS_ON_PVE3
    assert {s.vmid for s in drained.staying} == STAYS_ON_PVE3
    assert all(s.reason for s in drained.staying)
    assert all(m.source == "pve3" for m in drained.plan.moves)
    assert watch.problems == [] and demo_rules_broken(placement) == []
    state = DrainState.load(config.run.state_file)  # what a restarted controller reads
    assert state.drained == {"pve3"} and set(state.came_from["pve3"]) == on_pve3 - STAYS_ON_PVE3

    # While drained, the node receives nothing: the ordinary plan leaves it out.
    plan = run_cycle(client, None, config).plan
    assert plan.moves and all(m.target != "pve3" for m in plan.moves)
    assert next(n for n in plan.nodes_after if n.name == "pve3").state == "maintenance"

    # A new hard rule keeps one guest away: it stays, and the result says why.
    kept = min(state.came_from["pve3"])
    config = make_config(frozen_sim, rules={"anti_affinity": [{"name": "apart", "vmids": [kept, 131]}]}, **FAST)
    returned = undrain_node("pve3", config, client, None, _executor(client, config, watch))
    placement = frozen_sim.placement()
    assert returned.report is not None
    assert returned.report.count("failed") == 0, returned.report.outcomes
    assert {v for v, n in placement.items() if n == "pve3"} == on_pve3 - {kept}
    why = {s.vmid: s.reason for s in returned.staying}
    assert set(why) == {kept} and "apart" in why[kept], why
    assert watch.problems == [] and demo_rules_broken(placement) == []
    assert DrainState.load(config.run.state_file).drained == frozenset()


# A start at which the demo's drain plan evacuates 139 to pve4 and then balances it on to pve5;
# leaving that balancing step out (it gains less than it costs) must not undo the evacuation.
EVACUATED_THEN_BALANCED = 1796137650


def test_a_guest_evacuated_then_balanced_on_still_leaves_the_drained_node(make_config: Callable[..., Config]) -> None:
    with running_simulator("demo", time_scale=0, start=EVACUATED_THEN_BALANCED) as sim:
        config = make_config(sim, **FAST)
        client = PveClient(config.proxmox)
        watch = Watch(sim, client)
        drained = drain_node("pve3", config, client, None, _executor(client, config, watch))
        assert drained.report is not None and drained.report.count("failed") == 0
        assert {v for v, n in sim.placement().items() if n == "pve3"} == STAYS_ON_PVE3
        assert watch.problems == []


def test_drain_dry_run_changes_nothing_and_unknown_or_undrained_nodes_are_one_line(
    frozen_sim: RunningSimulator, make_config: Callable[..., Config], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(frozen_sim, **FAST)
    client = PveClient(config.proxmox)
    watch = Watch(frozen_sim, client)
    before = frozen_sim.placement()
    result = drain_node("pve3", config, client, None, _executor(client, config, watch, dry_run=True), dry_run=True)
    assert result.plan.moves and frozen_sim.placement() == before
    assert DrainState.load(config.run.state_file).drained == frozenset()
    with pytest.raises(ConfigError, match="no node 'pve9'"):
        drain_node("pve9", config, client, None, _executor(client, config, watch))
    path = write_config(tmp_path, frozen_sim)
    capsys.readouterr()
    assert main(["--config", str(path), "undrain", "pve2"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "pvebalance: undrain: node 'pve2' is not drained (drained: none)"
    assert main(["--config", str(path), "drain", "pve2", "--dry-run", "--output", "json"]) == 0
    out = capsys.readouterr().out
    assert '"action": "drain"' in out and frozen_sim.placement() == before


def test_a_drain_killed_after_its_first_migration_started_still_returns_that_guest_on_undrain(
    frozen_sim: RunningSimulator, make_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = make_config(frozen_sim, **FAST)
    path = tmp_path / "config.yaml"  # what make_config wrote
    client = PveClient(config.proxmox)
    on_pve3 = {v for v, n in frozen_sim.placement().items() if n == "pve3"}
    out = tmp_path / "drain.out"
    with out.open("w") as stdout:
        # The clock is frozen: the first migration starts and stays running until the kill.
        drain = subprocess.Popen([sys.executable, "-m", "controller.cli", "--config", str(path), "drain", "pve3"],
                                 cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        try:
            deadline = time.monotonic() + 120
            while "started (UPID:" not in out.read_text() and drain.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "started (UPID:" in out.read_text(), out.read_text()
        finally:
            os.kill(drain.pid, signal.SIGKILL)
            drain.wait()
    running = [t for t in frozen_sim.tasks() if t["status"] == "running"]
    assert len(running) == 1, running
    moving = int(running[0]["id"])
    assert moving in on_pve3
    frozen_sim.advance(600)  # the migration the killed drain started ends on its own
    assert frozen_sim.placement()[moving] != "pve3"

    watch = Watch(frozen_sim, client)
    returned = undrain_node("pve3", config, client, None, _executor(client, config, watch))
    assert returned.report is not None and moving in {m.vmid for m in returned.plan.moves}, returned.lines
    assert frozen_sim.placement()[moving] == "pve3"
    assert watch.problems == [] and demo_rules_broken(frozen_sim.placement()) == []
