"""Failures give partial metrics and an error count, never an HTTP 500 or a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from testkit.processes import free_port
from tests.exporter.conftest import RunningExporter, Scrape, module_block
from tests.support.sim import RunningSimulator

NODE_STATUS = "/nodes/{node}/status"


def test_node_going_offline_mid_run(sim: RunningSimulator, exporter: RunningExporter) -> None:
    before = exporter.scrape()
    assert before.value("pve_up", id="node/pve3") == 1
    sim.set_node_online("pve3", False)
    after = exporter.scrape()
    assert after.status == 200
    assert after.value("pve_up", id="node/pve3") == 0
    assert after.value("pve_node_load1", id="node/pve3") is None
    assert after.value("pve_cpu_usage_limit", id="node/pve3") == 32  # sizes stay, usage goes
    assert after.value("pve_cpu_usage_ratio", id="node/pve3") is None
    assert all(after.value("pve_up", id=f"node/{n}") == 1 for n in ("pve1", "pve2", "pve4", "pve5"))
    assert after.value("pve_node_load1", id="node/pve1") is not None
    sim.set_node_online("pve3", True)
    # Back online: its figures, and an uptime counted from its boot, never negative (the simulator
    # once answered -8 here, which the exporter rightly refused as a bad answer).
    back = exporter.scrape()
    assert back.value("pve_up", id="node/pve3") == 1 and back.value("pve_node_load1", id="node/pve3") is not None
    uptime = back.value("pve_uptime_seconds", id="node/pve3")
    assert uptime is not None and uptime >= 0


def test_unreachable_node_gives_partial_metrics_and_counts_errors(
    sim: RunningSimulator, exporter: RunningExporter
) -> None:
    # /cluster/resources still says online, but the node's proxied status call fails (595).
    sim.inject_fault({"type": "error", "endpoint": f"GET {NODE_STATUS}", "node": "pve2", "status": 595,
                      "message": "No route to host"})
    for _ in range(2):
        scrape = exporter.scrape()
        assert scrape.status == 200
    assert scrape.value("pve_up", id="node/pve2") == 0
    assert scrape.value("pve_node_load1", id="node/pve2") is None
    assert scrape.value("pve_node_load1", id="node/pve1") is not None
    assert scrape.value("pve_cpu_usage_ratio", id="qemu/102") is not None  # pve2's guests are still there
    assert scrape.value("pvebalance_exporter_node_errors_total", id="node/pve2") == 2
    assert scrape.value("pvebalance_exporter_api_errors_total", endpoint=NODE_STATUS, kind="unreachable") == 2
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 1
    sim.clear_faults()
    assert exporter.scrape().value("pve_up", id="node/pve2") == 1


def test_failure_and_recovery_are_logged_once(sim: RunningSimulator, exporter: RunningExporter) -> None:
    with capture_logs() as logs:
        sim.inject_fault({"type": "error", "endpoint": f"GET {NODE_STATUS}", "node": "pve2", "status": 595})
        exporter.scrape()
        exporter.scrape()
        sim.clear_faults()
        exporter.scrape()
        exporter.scrape()
    events = [(entry["event"], entry.get("subject")) for entry in logs if entry["event"].startswith("api_call")]
    assert events == [("api_call_failed", "pve2"), ("api_call_recovered", "pve2")]
    failed = next(entry for entry in logs if entry["event"] == "api_call_failed")
    assert failed["kind"] == "unreachable" and failed["cluster"] == sim.host


def scrape_while_hung(
    sim: RunningSimulator, exporter: RunningExporter, node: str, headers: dict[str, str] | None = None
) -> requests.Response:
    """One scrape while `node`'s status call never answers (after a warm-up scrape)."""
    exporter.scrape()
    sim.inject_fault({"type": "hang", "endpoint": f"GET {NODE_STATUS}", "node": node, "seconds": 120})
    try:
        return exporter.get("/metrics", headers=headers)
    finally:
        sim.clear_faults()


def test_slow_node_times_out_and_the_scrape_still_answers(
    sim: RunningSimulator, start_exporter: Any, tmp_path: Path
) -> None:
    # Bounds generous enough for a loaded machine; the hang (120 s) outlasts them all.
    exporter = start_exporter({"default": module_block(sim, tmp_path / "token", timeout=4)}, scrape_timeout=8)
    scrape = Scrape(scrape_while_hung(sim, exporter, "pve1"))
    assert scrape.status == 200
    assert scrape.value("pve_up", id="node/pve1") == 0
    assert scrape.value("pve_up", id="node/pve2") == 1
    assert scrape.value("pvebalance_exporter_api_errors_total", endpoint=NODE_STATUS, kind="timeout") == 1
    assert scrape.value("pvebalance_exporter_node_errors_total", id="node/pve1") == 1


def test_scrape_deadline_follows_prometheus_timeout_header(
    sim: RunningSimulator, start_exporter: Any, tmp_path: Path
) -> None:
    # The per-call timeout (30 s) and --scrape.timeout (60 s) are longer than Prometheus allows:
    # the header's 8 s decides.
    exporter = start_exporter({"default": module_block(sim, tmp_path / "token", timeout=30)}, scrape_timeout=60)
    response = scrape_while_hung(sim, exporter, "pve5", {"X-Prometheus-Scrape-Timeout-Seconds": "8"})
    assert response.status_code == 200
    assert 'pve_up{id="node/pve5"} 0.0' in response.text
    assert 'pve_up{id="node/pve4"} 1.0' in response.text


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"type": "error", "endpoint": "GET /cluster/resources", "status": 500, "message": "cluster not ready - no quorum?"},
         "refused"),
        ({"type": "error", "endpoint": "*", "status": 401, "message": "Authentication failed!"}, "auth"),
    ],
)
def test_api_refusing_still_answers_with_self_metrics(
    sim: RunningSimulator, exporter: RunningExporter, fault: dict[str, Any], kind: str
) -> None:
    sim.inject_fault(fault)
    scrape = exporter.scrape()
    assert scrape.status == 200
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 0
    assert scrape.value("pvebalance_exporter_api_errors_total", endpoint="/cluster/resources", kind=kind) == 1
    assert not [name for name in scrape.names if name.startswith("pve_")]


def test_api_down_still_answers_with_self_metrics(start_exporter: Any, sim: RunningSimulator, tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    exporter = start_exporter({"default": module_block(sim, tmp_path / "token", host=closed)})
    scrape = exporter.scrape()
    assert scrape.status == 200
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=closed) == 0
    assert scrape.value("pvebalance_exporter_api_errors_total", endpoint="/cluster/resources", kind="unreachable") == 1
    assert scrape.value("pvebalance_exporter_scrape_duration_seconds", cluster=closed) is not None


def test_wrong_token_is_an_auth_error(sim: RunningSimulator, start_exporter: Any, tmp_path: Path) -> None:
    block = module_block(sim, tmp_path / "token")
    (tmp_path / "token").write_text("00000000-0000-4000-8000-000000000bad\n")
    exporter = start_exporter({"default": block})
    scrape = exporter.scrape()
    assert scrape.status == 200
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 0
    assert scrape.value("pvebalance_exporter_api_errors_total", endpoint="/cluster/resources", kind="auth") == 1
