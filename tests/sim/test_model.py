"""The load model: deterministic per seed, profiles with their shapes, history consistent with now."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.loadmodel import CPU, level
from simulator.scenario import PROFILE_KINDS, Profile
from tests.sim.conftest import token_api
from tests.support.sim import running_simulator

START = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday midnight
PROFILES = {
    "steady": {"profile": "constant", "level": 0.5, "noise": 0},
    "daily": {"profile": "diurnal", "mean": 0.4, "amplitude": 0.3, "peak_hour": 14, "noise": 0},
    "spiky": {"profile": "bursty", "base": 0.05, "peak": 0.9, "chance": 0.3, "noise": 0},
    "growing": {"profile": "trending", "start": 0.1, "per_day": 0.1, "noise": 0},
    "sleepy": {"profile": "idle"},
}


def scenario(version: str = "9.0.10") -> dict[str, Any]:
    return {
        "nodes": [{"name": "n1", "cores": 8, "memory": "32GiB", "version": version,
                   "overhead": {"cpu": 1, "memory": "4GiB"}}],
        "guests": [{"vmid": 100 + i, "name": name, "node": "n1", "cpus": 4, "memory": "4GiB", "cpu": cpu,
                    "mem": {"profile": "constant", "level": 0.5, "noise": 0}}
                   for i, (name, cpu) in enumerate(PROFILES.items())],
    }


def cpu_series(seed: int, hours: int = 24) -> dict[str, list[float]]:
    with running_simulator(scenario(), seed=seed, time_scale=0, start=START) as sim:
        api = token_api(sim)
        series: dict[str, list[float]] = {name: [] for name in PROFILES}
        for _ in range(hours):
            for r in api.cluster.resources.get(type="vm"):
                series[r["name"]].append(r["cpu"])
            sim.advance(3600)
        return series


def test_same_seed_same_cluster_and_profiles_have_their_shapes() -> None:
    first, again, other = cpu_series(1), cpu_series(1), cpu_series(2)
    assert first == again
    assert first["spiky"] != other["spiky"]  # bursts come from the seed
    assert set(first["steady"]) == {0.5}
    daily = first["daily"]
    assert daily.index(max(daily)) == 14 and daily.index(min(daily)) == 2  # peak at 14:00 UTC
    assert max(daily) == pytest.approx(0.7, abs=0.01)
    assert set(first["spiky"]) <= {0.05, 0.9} and 0.9 in first["spiky"]
    assert first["growing"][0] == pytest.approx(0.1) and first["growing"][-1] == pytest.approx(0.1 + 0.1 * 23 / 24, abs=0.01)
    assert max(first["sleepy"]) <= 0.03


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(PROFILE_KINDS)), seed=st.integers(0, 2**31), vmid=st.integers(100, 999999),
       t=st.floats(0, 4e9), value=st.floats(-2, 2))
def test_levels_stay_within_0_and_1(kind: str, seed: int, vmid: int, t: float, value: float) -> None:
    params = {k: value for k in PROFILE_KINDS[kind]}
    assert 0.0 <= level(Profile(kind, params), seed, vmid, CPU, t, 0.0) <= 1.0


def test_node_is_the_sum_of_guests_plus_overhead_and_derives_its_other_figures() -> None:
    # 14:00:59: the last minute (the 1-minute load average's window) is one model step
    with running_simulator(scenario(), time_scale=0, start=START + 14 * 3600 + 59) as sim:
        api = token_api(sim)
        guests = api.cluster.resources.get(type="vm")
        node = api.cluster.resources.get(type="node")[0]
        cores = sum(g["cpu"] * g["maxcpu"] for g in guests) + 1
        assert node["cpu"] == pytest.approx(min(1.0, cores / 8), abs=0.001)
        assert node["mem"] == sum(g["mem"] for g in guests) + 4 * 1024**3
        status = api.nodes("n1").status.get()
        assert float(status["loadavg"][0]) == pytest.approx(cores + status["wait"] * 8, abs=0.05)
        assert status["ksm"]["shared"] == 0 and status["swap"]["used"] == 0  # 14 of 32 GiB used


def test_memory_pressure_brings_swap_ksm_and_psi() -> None:
    crowded = scenario()
    for guest in crowded["guests"]:
        guest["mem"] = {"profile": "constant", "level": 1.0, "noise": 0}
        guest["memory"] = "6GiB"  # 5 x 6 GiB + 4 GiB overhead > 32 GiB
    with running_simulator(crowded, time_scale=0, start=START) as sim:
        api = token_api(sim)
        status = api.nodes("n1").status.get()
        assert status["swap"]["used"] > 0 and status["ksm"]["shared"] > 0
        row = api.nodes("n1").rrddata.get(timeframe="hour")[-1]
        assert row["pressurememorysome"] > 0 and row["swapused"] > 0


def test_rrddata_history_agrees_with_the_present() -> None:
    with running_simulator(scenario(), time_scale=0, start=START + 14 * 3600) as sim:
        api = token_api(sim)
        now_cpu = api.cluster.resources.get(type="node")[0]["cpu"]
        last = api.nodes("n1").rrddata.get(timeframe="hour", cf="AVERAGE")[-1]
        assert last["cpu"] == pytest.approx(now_cpu, abs=0.05)
        guest_rows = api.nodes("n1").qemu(101).rrddata.get(timeframe="day", cf="AVERAGE")
        by_hour = {r["time"] % 86400 // 3600: r["cpu"] for r in guest_rows if r["time"] % 3600 == 0}
        assert by_hour[14] > by_hour[2]  # the diurnal guest's history peaks in the afternoon
        maxima = api.nodes("n1").qemu(102).rrddata.get(timeframe="day", cf="MAX")
        averages = api.nodes("n1").qemu(102).rrddata.get(timeframe="day", cf="AVERAGE")
        assert all(m["cpu"] >= a["cpu"] for m, a in zip(maxima, averages, strict=True))


def test_history_follows_a_migrated_guest() -> None:
    two_nodes = scenario()
    two_nodes["nodes"].append({"name": "n2", "cores": 8, "memory": "32GiB", "version": "9.0.10"})
    with running_simulator(two_nodes, time_scale=0, start=START) as sim:
        api = token_api(sim)
        api.nodes("n1").qemu(100).migrate.post(target="n2", online=1)
        sim.advance(1800)  # the hour of rows now starts 29 minutes before the migration
        rows = api.nodes("n2").rrddata.get(timeframe="hour")
        # n2 had only host overhead (0.5 cores) before the steady guest (2 cores) arrived
        assert rows[0]["cpu"] == pytest.approx(0.5 / 8, abs=0.01)
        assert rows[-1]["cpu"] == pytest.approx(2.5 / 8, abs=0.01)


def test_counters_grow_while_running_and_reset_on_migration() -> None:
    two_nodes = scenario()
    two_nodes["nodes"].append({"name": "n2", "cores": 8, "memory": "32GiB", "version": "9.0.10"})
    with running_simulator(two_nodes, time_scale=0, start=START) as sim:
        api = token_api(sim)
        first = api.nodes("n1").qemu(100).status.current.get()
        sim.advance(60)
        second = api.nodes("n1").qemu(100).status.current.get()
        assert second["netin"] > first["netin"] > 0 and second["uptime"] == first["uptime"] + 60
        api.nodes("n1").qemu(100).migrate.post(target="n2", online=1)
        sim.advance(60)
        moved = api.nodes("n2").qemu(100).status.current.get()
        assert moved["netin"] < second["netin"]
