"""`prometheus.statistic: forecast(6h)` and `blend(...)` (issue 17) over a real Prometheus
holding the exporter's history of a simulated cluster with a steadily growing guest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.config import load_config
from controller.cycle import run_cycle
from controller.promql import PromQL, Statistic
from exporter.backfill import backfill
from pveapi.client import PveClient
from pveapi.errors import ConfigError
from testkit.prometheus import running_prometheus
from tests.controller.conftest import write_config
from tests.support.sim import running_simulator

START = 1_767_000_000.0  # the simulation start: the trending guest grows from here


def _guest(vmid: int, node: str, cpu: dict[str, Any] | float, cpus: int = 2, memory: str = "4GiB",
           mem: float = 0.5) -> dict[str, Any]:
    return {"vmid": vmid, "type": "qemu", "name": f"vm{vmid}", "node": node, "cpus": cpus, "memory": memory,
            "cpu": cpu, "mem": mem}


# pve1 carries a guest whose CPU grows by a quarter of its 8 vCPUs every 6 hours: an hour in,
# pve1's window average (76 % CPU, 19 % memory) weighs as much as pve2's (60 %, 35 %), and is under
# the 85 % high-water mark; 6 hours on it is 88 %.
TRENDING: dict[str, Any] = {
    "name": "trending",
    "seed": 3,
    "nodes": [{"name": "pve1", "cores": 16, "memory": "64GiB"}, {"name": "pve2", "cores": 16, "memory": "64GiB"}],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True, "content": "images,rootdir", "size": "1TiB"}],
    "guests": [
        _guest(100, "pve1", {"profile": "trending", "start": 0.75, "per_day": 1.0}, cpus=8),
        *(_guest(101 + i, "pve1", 0.6) for i in range(5)),
        *(_guest(110 + i, "pve2", 0.4, cpus=4, memory="8GiB", mem=0.47) for i in range(6)),
    ],
}


@pytest.fixture(autouse=True)
def _sim_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_forecast_relieves_the_node_a_trending_guest_will_overload_while_avg_does_not(tmp_path: Path) -> None:
    with running_simulator(TRENDING, time_scale=0, start=START) as sim:
        backfill(sim.connection_settings(), sim.admin_url, START, START + 3600, 60, tmp_path / "tsdb")
        sim.set_time(START + 3600)
        with running_prometheus(tmp_path / "tsdb") as prom:
            plans = {}
            for statistic in ("avg", "forecast(6h)"):
                config = load_config(write_config(tmp_path, sim, prometheus={
                    "url": prom.url, "window": "1h", "statistic": statistic, "max_data_age": "10m"},
                    policy={"min_gain": 0.01}))  # a small cluster: one 2-vCPU guest is a small gain
                assert config.prometheus is not None
                cycle = run_cycle(PveClient(config.proxmox), PromQL(config.prometheus), config, at=START + 3600)
                assert cycle.actionable and cycle.plan.sources == {"prometheus": 12}, cycle.warnings
                plans[statistic] = cycle
    avg, ahead = plans["avg"].plan, plans["forecast(6h)"].plan
    assert avg.moves == () and avg.imbalance_before < 0.05
    grower = plans["forecast(6h)"].model.guest_usage[100]
    assert grower.cpu_cores == pytest.approx(8.0)  # 104 % of its vCPUs in 6 h, clamped to all 8
    assert any(m.source == "pve1" for m in ahead.moves), ahead.notes
    assert ahead.imbalance_after < ahead.imbalance_before
    after = {n.name: n for n in ahead.nodes_after}
    assert after["pve1"].cpu_ratio < 0.85  # under the high-water mark when the growth arrives


@pytest.mark.parametrize(("text", "message"), [
    ("forecast(0h)", r"forecast\(D\) needs 0 < D <= 7d"),
    ("forecast(30d)", r"forecast\(D\) needs 0 < D <= 7d"),
    ("blend(0.5*now,0.3*24h)", r"blend weights must be positive and add up to 1, got 0.8"),
    ("blend(0.5*now,half*24h)", r"blend parts are WEIGHT\*WINDOW"),
])
def test_bad_forecast_and_blend_statistics_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Statistic.parse(text, "prometheus.statistic")


def test_a_blend_mixes_windows_by_their_weights(tmp_path: Path) -> None:
    with running_simulator(TRENDING, time_scale=0, start=START) as sim:
        backfill(sim.connection_settings(), sim.admin_url, START, START + 3600, 60, tmp_path / "tsdb")
        with running_prometheus(tmp_path / "tsdb") as prom:
            at = START + 3600
            settings = load_config(write_config(tmp_path, sim, prometheus={"url": prom.url, "max_data_age": "10m"})).prometheus
            assert settings is not None
            figures = {}
            for text in ("blend(0.5*now, 0.5*1h)", "avg"):
                statistic = Statistic.parse(text, "x")
                figures[text] = PromQL(replace(settings, statistic=statistic)).history(at)
            now_only = PromQL(replace(settings, statistic=Statistic.parse("blend(1*now)", "x"))).history(at)
    blend, avg = figures["blend(0.5*now, 0.5*1h)"].cpu_cores["qemu/100"], figures["avg"].cpu_cores["qemu/100"]
    assert blend == pytest.approx(0.5 * now_only.cpu_cores["qemu/100"] + 0.5 * avg, rel=1e-6)
    assert avg < blend < now_only.cpu_cores["qemu/100"]  # the growing guest: the present is above the hour's mean
