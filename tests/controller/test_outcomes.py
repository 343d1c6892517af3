"""Outcome tracking (issue 17): an applied plan's prediction against what Prometheus measured
after it, and guests that came back within their cooldown, over the simulator and a real
Prometheus holding the exporter's history."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from controller.config import load_config
from controller.loop import Controller
from controller.outcomes import OutcomeLog, outcomes_path
from controller.promql import PromQL
from exporter.backfill import backfill
from pveapi.client import PveClient
from pveapi.errors import ConfigError
from testkit.prometheus import running_prometheus
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

AUTO = {"automation": "automatic", "hold_time": 0, "cooldown": "1h", "interval": "5m"}
APPLY = {"poll_interval": 5}
HORIZONS = (300, 3600, 86400)


def _metrics(controller: Controller) -> dict[str, float]:
    lines = controller.metrics.render().decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line and not line.startswith("#")}


def _controller(sim: RunningSimulator, config_path: Path, promql_url: str | None = None) -> Controller:
    config = load_config(config_path)
    promql = PromQL(replace(config.prometheus, url=promql_url)) if config.prometheus and promql_url else None
    return Controller(config, PveClient(config.proxmox), promql, clock=sim.clock, sleep=sim.advance)


@pytest.fixture(autouse=True)
def _sim_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    # The backfill's admin-clock session must use the simulator's own certificate.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_an_applied_plan_is_measured_against_prometheus_at_every_horizon(tmp_path: Path) -> None:
    tsdb = tmp_path / "tsdb"
    with running_simulator("demo", time_scale=0) as sim:
        start = sim.clock()
        backfill(sim.connection_settings(), sim.admin_url, start - 3600, start, 60, tsdb)
        sim.set_time(start)
        with running_prometheus(tsdb) as prom:
            path = write_config(tmp_path, sim, prometheus={"url": prom.url, "window": "1h", "max_data_age": "10m"},
                                run=AUTO, apply=APPLY)
            controller = _controller(sim, path, prom.url)
            try:
                summary = controller.cycle()
            finally:
                controller.release()  # its lease renewer would outlive the simulator
            assert summary.result == "applied" and summary.report is not None and summary.report.count("succeeded")
            before = _metrics(controller)
        [outcome] = OutcomeLog.load(controller.config.run.state_file).outcomes
        assert before["pvebalance_plan_predicted_imbalance_ratio"] == pytest.approx(outcome.predicted_imbalance)
        assert not [k for k in before if k.startswith("pvebalance_plan_observed_imbalance_ratio")]  # nothing due yet
        assert {m.vmid for m in outcome.moves} == {o.move.vmid for o in summary.report.outcomes if o.result == "succeeded"}

        # A day goes by; the exporter's history of the minutes before each horizon reaches Prometheus.
        for horizon in HORIZONS:
            backfill(sim.connection_settings(), sim.admin_url, outcome.applied_at + horizon - 600,
                     outcome.applied_at + horizon, 60, tsdb)
        sim.set_time(outcome.applied_at + HORIZONS[-1] + 60)
        with running_prometheus(tsdb) as prom:
            later = _controller(sim, path, prom.url)
            try:
                later.cycle()
            finally:
                later.release()
            after = _metrics(later)
    [first, *_] = OutcomeLog.load(later.config.run.state_file).outcomes
    assert sorted(first.observed) == ["1h", "24h", "5m"]
    for label in ("5m", "1h", "24h"):
        observed = after[f'pvebalance_plan_observed_imbalance_ratio{{horizon="{label}"}}']
        assert observed == pytest.approx(first.observed[label].imbalance)
        assert after[f'pvebalance_plan_prediction_error_ratio{{horizon="{label}"}}'] == pytest.approx(
            observed - first.predicted_imbalance)
        assert set(first.observed[label].loads) == set(first.predicted_loads)
    # Five minutes on, the cluster is where the plan said it would be (the demo's loads drift slowly).
    assert first.observed["5m"].imbalance == pytest.approx(first.predicted_imbalance, abs=0.05)
    assert first.observed["5m"].imbalance < first.imbalance_before


def test_a_guest_moved_back_within_its_cooldown_is_a_ping_pong(tmp_path: Path) -> None:
    with running_simulator("demo", time_scale=0) as sim:
        controller = _controller(sim, write_config(tmp_path, sim, run=AUTO, apply=APPLY))
        try:
            assert controller.cycle().result == "applied"
            [outcome] = controller.outcomes.outcomes
            moved = outcome.moves[0]
            guest = next(g for g in sim.state()["guests"] if g["vmid"] == moved.vmid)
            # Someone else (a person, another tool) moves it straight back.
            kind = "qemu" if guest["type"] == "qemu" else "lxc"
            extra = {"online": 1} if kind == "qemu" and guest["status"] == "running" else {"restart": 1}
            PveClient(controller.config.proxmox).post(f"/nodes/{moved.target}/{kind}/{moved.vmid}/migrate",
                                                      target=moved.source, **extra)
            sim.advance(600)
            assert sim.placement()[moved.vmid] == moved.source
            controller.cycle()
            controller.cycle()  # counted once, however many cycles see it
            metrics = _metrics(controller)
        finally:
            controller.release()
    assert metrics["pvebalance_plan_ping_pongs_total"] == 1
    saved = json.loads(outcomes_path(controller.config.run.state_file).read_text())
    assert saved["outcomes"][0]["ping_pongs"] == [moved.vmid]


def test_a_broken_outcome_file_is_one_clear_line(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    outcomes_path(state).write_text('{"outcomes": [{"applied_at": "soon"}]}')
    with pytest.raises(ConfigError, match=r"not a pvebalance outcome file; fix or remove it"):
        OutcomeLog.load(state)
