"""Backfill: simulated history through our collectors, promtool blocks, a real Prometheus reading them."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from exporter.backfill import backfill
from exporter.collectors import CollectorOptions, concerns
from exporter.scrape import scrape
from exporter.target import Target
from pveapi.errors import ConfigError
from testkit.prometheus import running_prometheus
from tests.exporter.conftest import api_get, module_block
from tests.support.sim import RunningSimulator

ROOT = Path(__file__).resolve().parents[2]


def live_value(sim: RunningSimulator, at: float, vmid: int) -> float:
    """What the exporter's collectors read for a guest with the simulator's clock at `at`."""
    sim.set_time(at)
    target = Target(sim.connection_settings(), max_workers=2)
    try:
        result = scrape(target, concerns(CollectorOptions()), 30)
    finally:
        target.close()
    assert result.inventory is not None
    guest = result.inventory.guest(vmid)
    assert guest is not None
    return guest.cpu


def test_backfilled_history_is_what_prometheus_answers(sim: RunningSimulator, tmp_path: Path) -> None:
    now = sim.clock()
    start = now - 2 * 3600
    data = tmp_path / "data"
    report = backfill(sim.connection_settings(), sim.admin_url, start, now, 60, data)
    assert report.steps == 121
    assert sim.clock() == pytest.approx(now)  # the frozen clock is put back
    assert list(data.iterdir()), "promtool wrote no blocks"

    middle = start + 3600
    expected_cpu = live_value(sim, middle, 100)
    with running_prometheus(data) as prometheus:
        assert prometheus.value('pve_cpu_usage_ratio{id="qemu/100"}', at=middle) == pytest.approx(expected_cpu)
        assert prometheus.value('count_over_time(pve_cpu_usage_ratio{id="qemu/100"}[3h])', at=now) == 121
        # Evaluated between two samples: Prometheus 2.x closes ranges at both ends, so a sample
        # whose millisecond timestamp lands exactly on the boundary would count twice otherwise.
        between = now - 30
        assert prometheus.value('count_over_time(pve_cpu_usage_ratio{id="qemu/100"}[2h])', at=between) == 120
        assert prometheus.value('pve_up{id="node/pve1"}', at=now) == 1
        assert prometheus.value('pve_guest_tag_info{id="qemu/100",tag="web"}', at=now) == 1
        assert prometheus.value('pve_node_load1{id="node/pve2"}', at=start) is not None
        # The diurnal load model moves: two hours of history are not one repeated value.
        spread = prometheus.value('max_over_time(pve_cpu_usage_ratio{id="qemu/100"}[2h]) '
                                  '- min_over_time(pve_cpu_usage_ratio{id="qemu/100"}[2h])', at=now)
        assert spread is not None and spread > 0
        assert not prometheus.query("pvebalance_exporter_scrape_success", at=now)  # self-metrics are not history


def test_cli_backfill_writes_blocks_and_restores_a_running_clock(sim: RunningSimulator, tmp_path: Path) -> None:
    sim.set_time_scale(60)
    sim.set_time(time.time() + 600)  # a fast simulator is ahead of the wall clock
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"default": module_block(sim, tmp_path / "token")}))
    before = sim.clock()
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "backfill", f"--config.file={config}",
         f"--sim-admin-url={sim.admin_url}", "--hours=0.25", "--step=60", f"--output={tmp_path / 'data'}",
         "--label=job=pve", "--label=instance=exporter:19221", "--log.format=json"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "16 steps" in done.stdout
    clock = api_get(sim, "/version")  # the API still answers after the clock jumped around
    assert clock["version"]
    assert sim.clock() >= before  # restored to where a running clock would be, not left in the past
    finished = time.time()
    with running_prometheus(tmp_path / "data") as prometheus:
        # History stops at the wall clock, where Prometheus' live scrapes begin: a sample past it
        # would make those live samples "out of bounds".
        newest = prometheus.value('timestamp(pve_up{id="node/pve1"})', at=finished + 240)
        assert newest is not None and newest <= finished
        # Stamped with the labels live scrapes will carry, so those continue these series.
        series = prometheus.query('pve_up{id="node/pve1"}', at=newest)
        assert [s["metric"]["job"] + " " + s["metric"]["instance"] for s in series] == ["pve exporter:19221"]


def test_cli_backfill_rejects_a_bad_label(sim: RunningSimulator, tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"default": module_block(sim, tmp_path / "token")}))
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "backfill", f"--config.file={config}",
         f"--sim-admin-url={sim.admin_url}", f"--output={tmp_path / 'data'}", "--label=__name__=x"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "expected NAME=VALUE" in done.stderr and "Traceback" not in done.stderr


def test_backfill_refuses_nonsense_before_touching_the_clock(sim: RunningSimulator, tmp_path: Path) -> None:
    now = sim.clock()
    with pytest.raises(ConfigError, match="step > 0"):
        backfill(sim.connection_settings(), sim.admin_url, now, now - 60, 60, tmp_path / "data")
    with pytest.raises(ConfigError, match="not found"):
        backfill(sim.connection_settings(), sim.admin_url, now - 60, now, 60, tmp_path / "data", promtool="no-promtool")
    assert sim.clock() == now


@pytest.mark.parametrize(("flag", "says"), [
    ("--hours=nan", "--hours: expected a number"),
    ("--hours=-1", "--hours: expected a number"),
    ("--hours=1e308", "--hours: expected a number"),
    ("--step=inf", "--step: expected a number"),
    ("--step=0", "--step: expected a number"),
    ("--end=nan", "--end: expected a Unix time"),
    ("--end=4102444800", "--end: expected a Unix time"),  # 2100: past the wall clock
])
def test_cli_backfill_refuses_a_bad_range_in_one_line(sim: RunningSimulator, tmp_path: Path, flag: str,
                                                      says: str) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"default": module_block(sim, tmp_path / "token")}))
    before = sim.clock()
    done = subprocess.run(
        [sys.executable, "-m", "exporter.cli", "backfill", f"--config.file={config}",
         f"--sim-admin-url={sim.admin_url}", f"--output={tmp_path / 'data'}", flag],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists() and sim.clock() == before


def test_cli_backfill_from_a_simulator_started_near_1970_says_so_in_one_line(sim: RunningSimulator,
                                                                            tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump({"default": module_block(sim, tmp_path / "token")}))
    before = sim.clock()
    sim.set_time(1000)  # `pvebalance-sim --start 0` is a valid start
    try:
        done = subprocess.run(
            [sys.executable, "-m", "exporter.cli", "backfill", f"--config.file={config}",
             f"--sim-admin-url={sim.admin_url}", f"--output={tmp_path / 'data'}", "--hours=1"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
    finally:
        sim.set_time(before)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "--hours: 1 h of history would start before 1970" in done.stderr, done.stderr
