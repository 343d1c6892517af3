"""`policy.pressure_weight` (issue 17): a node's PSI from Prometheus weighs its load, over the
simulator and a real Prometheus holding the exporter's history (with --collector.pressure)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.config import Config, load_config
from controller.cycle import Cycle, run_cycle
from controller.loop import Controller
from controller.promql import PrometheusSettings, PromQL, pressure_query
from exporter.backfill import backfill
from exporter.collectors import CollectorOptions
from planner.framework import plan
from pveapi.client import PveClient
from testkit.prometheus import running_prometheus
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

START = 1_767_000_000.0
HOUR = 3600.0
PSI = CollectorOptions(pressure=True)


def _guest(vmid: int, node: str, cpu: dict[str, Any] | float) -> dict[str, Any]:
    return {"vmid": vmid, "type": "qemu", "name": f"vm{vmid}", "node": node, "cpus": 8, "memory": "8GiB",
            "cpu": cpu, "mem": 0.5}


# Both nodes carry three 8-vCPU guests averaging about a quarter of their vCPUs, so over the hour
# their utilisation is the same. pve1's three are batch jobs on one schedule (burst group 1):
# together they ask for 19 of its 16 threads a quarter of the time, and it stalls; pve2's are steady.
STALLING: dict[str, Any] = {
    "name": "stalling",
    "seed": 7,
    "nodes": [{"name": n, "cores": 16, "memory": "64GiB", "version": "9.1.3"} for n in ("pve1", "pve2")],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True, "content": "images,rootdir", "size": "1TiB"}],
    "guests": [
        *(_guest(100 + i, "pve1", {"profile": "bursty", "base": 0.1, "peak": 0.8, "chance": 0.25, "group": 1,
                                   "noise": 0}) for i in range(3)),
        *(_guest(110 + i, "pve2", {"profile": "constant", "level": 0.215, "noise": 0}) for i in range(3)),
    ],
}


@pytest.fixture(autouse=True)
def _sim_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _config(tmp_path: Path, sim: RunningSimulator, url: str, weight: float) -> Path:
    return write_config(tmp_path, sim, prometheus={"url": url, "window": "1h", "max_data_age": "10m"},
                        policy={"pressure_weight": weight, "min_gain": 0.01},
                        run={"automation": "automatic", "hold_time": 0, "cooldown": "1h", "interval": "5m"},
                        apply={"poll_interval": 5})


@contextmanager
def _an_hour_of_history(scenario: dict[str, Any], tsdb: Path) -> Iterator[RunningSimulator]:
    """The simulator at the end of an hour whose exporter history (PSI included) is in `tsdb`."""
    with running_simulator(scenario, time_scale=0, start=START) as sim:
        backfill(sim.connection_settings(), sim.admin_url, START, START + HOUR, 60, tsdb, PSI)
        sim.set_time(START + HOUR)
        yield sim


def _plans(tmp_path: Path, sim: RunningSimulator, url: str) -> tuple[dict[float, Cycle], Config]:
    """The plans at the end of the backfilled hour with pressure_weight 0 and 2 (whose config is returned)."""
    cycles: dict[float, Cycle] = {}
    for weight in (0.0, 2.0):
        config = load_config(_config(tmp_path, sim, url, weight))
        assert config.prometheus is not None
        cycles[weight] = run_cycle(PveClient(config.proxmox), PromQL(config.prometheus), config, at=START + HOUR)
    return cycles, config


def _stall(url: str, at: float) -> dict[str, float]:
    """Every node's CPU + memory PSI over the hour before `at`, as the controller asks for it."""
    return PromQL(PrometheusSettings(url=url)).query(pressure_query("1h"), at)


def test_pressure_relieves_a_node_that_stalls_at_moderate_utilisation(tmp_path: Path) -> None:
    tsdb = tmp_path / "tsdb"
    with _an_hour_of_history(STALLING, tsdb) as sim:
        with running_prometheus(tsdb) as prom:
            cycles, config = _plans(tmp_path, sim, prom.url)
            stall_before = _stall(prom.url, START + HOUR)
            assert config.prometheus is not None
            controller = Controller(config, PveClient(config.proxmox), PromQL(config.prometheus), clock=sim.clock,
                                    sleep=sim.advance)
            try:
                summary = controller.cycle()  # pressure_weight 2: carries out the plan
            finally:
                controller.release()  # its lease renewer would outlive the simulator
        assert summary.result == "applied" and summary.report is not None
        applied = sim.clock()
        backfill(sim.connection_settings(), sim.admin_url, applied, applied + HOUR, 60, tsdb, PSI)
        with running_prometheus(tsdb) as prom:
            stall_after = _stall(prom.url, applied + HOUR)
    off, on = cycles[0.0], cycles[2.0]
    loads = {n.name: n for n in off.plan.nodes_before}
    # Utilisation alone: the nodes look alike (and moderate), so nothing moves, and no PSI is asked for.
    assert all(n.cpu_ratio < 0.5 and n.mem_ratio < 0.5 for n in loads.values())
    assert off.plan.moves == () and off.plan.imbalance_before < 0.05
    assert off.observation.history is not None and off.observation.history.queries == 3
    assert off.model.node_pressure == {}
    # pve1 stalls a tenth of the time while pve2 does not: with pressure it counts as busier.
    assert stall_before["node/pve1"] > 0.05 and stall_before.get("node/pve2", 0.0) < 0.01
    assert on.observation.history is not None and on.observation.history.queries == 5
    assert on.model.node_pressure == pytest.approx({"pve1": stall_before["node/pve1"], "pve2": 0.0}, abs=1e-9)
    weighed = {n.name: n for n in on.plan.nodes_before}
    assert weighed["pve1"].load > loads["pve1"].load and weighed["pve2"].load == loads["pve2"].load
    leaving = {m.vmid for m in on.plan.moves if m.source == "pve1"}
    assert leaving and leaving <= {100, 101, 102}  # batch guests leave the stalling node (steady ones may swap in)
    # The next hour, measured the same way: the stalling node is relieved and no node took its stall over.
    assert stall_after["node/pve1"] < stall_before["node/pve1"] / 2
    assert max(stall_after.values()) < stall_before["node/pve1"] / 2


def _bursty(vmid: int, cpus: int, base: float, peak: float) -> dict[str, Any]:
    profile = {"profile": "bursty", "base": base, "peak": peak, "chance": 0.25, "group": 1, "noise": 0}
    steady_memory = {"profile": "constant", "level": 0.5, "noise": 0}
    return {**_guest(vmid, "pve1", profile), "cpus": cpus, "mem": steady_memory}


# STALLING with pve1's batch guests alike in what they ask for (0.8 cores, 6.4 in a burst) but not
# in how they stall: 102 asks for it with 8 vCPUs, so in every burst it waits for 80 % of its time
# slices where 100 and 101, with 16 vCPUs, wait for 40 %. The lowest VMID would win a tie without
# the guests' own pressure.
OWN_STALL: dict[str, Any] = {
    **STALLING,
    "name": "own-stall",
    "guests": [_bursty(100, 16, 0.05, 0.4), _bursty(101, 16, 0.05, 0.4), _bursty(102, 8, 0.1, 0.8),
               *STALLING["guests"][3:]],
}


def test_the_guest_that_stalls_most_leaves_the_stalling_node_first(tmp_path: Path) -> None:
    with _an_hour_of_history(OWN_STALL, tmp_path / "tsdb") as sim, running_prometheus(tmp_path / "tsdb") as prom:
        cycles, config = _plans(tmp_path, sim, prom.url)
    off, on = cycles[0.0], cycles[2.0]
    # The three ask for exactly the same load, so only their own stall tells them apart.
    demand = {v: on.model.guest_usage[v] for v in (100, 101, 102)}
    assert demand[100] == demand[101] == demand[102]
    stall = on.model.guest_pressure
    assert stall[102] > 1.5 * max(stall[100], stall[101]) > 0 and stall.get(110, 0.0) == 0.0
    assert on.observation.history is not None and on.observation.history.queries == 5
    leaving = [m.vmid for m in on.plan.moves if m.source == "pve1"]
    assert leaving and leaving[0] == 102
    # Weight 0: no PSI is asked for, nothing moves; and a guest's stall alone changes no plan.
    assert off.observation.history is not None and off.observation.history.queries == 3
    assert off.model.guest_pressure == {} and off.plan.moves == ()
    unweighted = replace(config.policy, pressure_weight=0.0)
    with_stalls = plan(on.model, on.rules, unweighted)
    assert with_stalls == plan(replace(on.model, node_pressure={}, guest_pressure={}), on.rules, unweighted)
    assert with_stalls.moves == ()
