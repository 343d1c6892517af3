"""A scrape of the demo cluster: the metric contract, values against the API, calls per scrape."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from exporter.collectors import CollectorOptions
from exporter.collectors.subscription import parse_subscription
from tests.exporter.conftest import RunningExporter, api_get, module_block
from tests.support.sim import RunningSimulator, demo_with_replication, running_simulator

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
# Counters with labels have no series until something fails: covered in test_failures.py.
ONLY_AFTER_ERRORS = {"pvebalance_exporter_api_errors_total", "pvebalance_exporter_node_errors_total"}
# Simulated nodes have no subscription, so no due date: covered by test_subscription_due_date.
ONLY_WITH_A_SUBSCRIPTION = {"pve_subscription_next_due_timestamp_seconds"}


def documented_exporter_metrics() -> set[str]:
    """Every metric name in the exporter's tables of docs/metrics.md (not the controller's)."""
    text = METRICS_DOC.read_text()
    exporter_part = text.split("## Controller")[0]
    names: set[str] = set()
    for line in exporter_part.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(pve[a-z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_documented_metric_is_exported(start_exporter: Any, tmp_path: Path) -> None:
    with running_simulator(demo_with_replication(), time_scale=0) as sim:  # the replication and QDevice families too
        exporter = start_exporter(
            {"default": module_block(sim, tmp_path / "token")}, CollectorOptions(pressure=True, config=True)
        )
        scrape = exporter.scrape()
    exported = {name.removesuffix("_bucket") for name in scrape.names}
    missing = documented_exporter_metrics() - ONLY_AFTER_ERRORS - ONLY_WITH_A_SUBSCRIPTION - exported
    assert not missing, f"documented in docs/metrics.md but not exported: {sorted(missing)}"
    assert len(documented_exporter_metrics()) > 35  # the doc parse found the tables


def test_subscription_due_date() -> None:
    subscription = parse_subscription({"status": "active", "level": "c", "nextduedate": "2027-01-31"})
    assert (subscription.level, subscription.status, subscription.next_due) == ("c", "active", 1801353600.0)


def test_guest_and_node_values_match_the_api(sim: RunningSimulator, exporter: RunningExporter) -> None:
    scrape = exporter.scrape()
    resources = api_get(sim, "/cluster/resources")
    guests = [e for e in resources if e["type"] in ("qemu", "lxc")]
    assert len(guests) == 60
    for guest in guests:
        gid = guest["id"]
        assert scrape.value("pve_cpu_usage_ratio", id=gid) == pytest.approx(guest["cpu"])
        assert scrape.value("pve_cpu_usage_limit", id=gid) == guest["maxcpu"]
        assert scrape.value("pve_memory_usage_bytes", id=gid) == guest["mem"]
        assert scrape.value("pve_memory_size_bytes", id=gid) == guest["maxmem"]
        assert scrape.value("pve_network_receive_bytes_total", id=gid) == guest["netin"]
        assert scrape.value("pve_disk_written_bytes_total", id=gid) == guest["diskwrite"]
        assert scrape.value("pve_up", id=gid) == (1 if guest["status"] == "running" else 0)
    for node in (e for e in resources if e["type"] == "node"):
        nid = node["id"]
        status = api_get(sim, f"/nodes/{node['node']}/status")
        assert scrape.value("pve_up", id=nid) == 1
        assert scrape.value("pve_cpu_usage_ratio", id=nid) == pytest.approx(node["cpu"])
        assert scrape.value("pve_node_load1", id=nid) == float(status["loadavg"][0])
        assert scrape.value("pve_node_load15", id=nid) == float(status["loadavg"][2])
        assert scrape.value("pve_node_iowait_ratio", id=nid) == pytest.approx(status["wait"])
        assert scrape.value("pve_node_swap_usage_bytes", id=nid) == status["swap"]["used"]
        assert scrape.value("pve_node_memory_available_bytes", id=nid) == status["memory"]["available"]
        assert scrape.value("pve_node_cpu_count", id=nid) == status["cpuinfo"]["cpus"]


def test_info_tags_pools_ha_and_locks(exporter: RunningExporter) -> None:
    scrape = exporter.scrape()
    # One series per tag, so `pve_guest_tag_info{tag="web"}` selects the web servers.
    web = sorted(s["id"] for s in scrape.series("pve_guest_tag_info") if s["tag"] == "web")
    assert web == ["qemu/100", "qemu/101", "qemu/102"]
    assert scrape.value(
        "pve_guest_info", id="qemu/100", node="pve1", name="web01", type="qemu", template="0",
        tags="plb_anti_affinity_web;prod;web",
    ) == 1
    assert scrape.value("pve_guest_pool_info", id="qemu/111", pool="infra") == 1
    assert scrape.value("pve_ha_state", id="qemu/120", state="started") == 1
    assert scrape.value("pve_lock_state", id="qemu/140", state="backup") == 1
    assert [s["id"] for s in scrape.series("pve_lock_state") if scrape.value("pve_lock_state", **s) == 1] == ["qemu/140"]
    # As prometheus-pve-exporter: a 0 for each of 9 lock and 11 HA states a guest is not in.
    assert scrape.value("pve_lock_state", id="qemu/140", state="migrate") == 0
    assert len(scrape.series("pve_lock_state")) == 60 * 9
    assert scrape.value("pve_ha_state", id="qemu/120", state="stopped") == 0
    assert scrape.value("pve_ha_state", id="node/pve1", state="maintenance") == 0
    assert scrape.value("pve_cluster_info", id="cluster/demo", nodes="5", quorate="1", version="8") == 1
    assert scrape.value("pve_up", id="cluster/demo") == 1
    assert {s["nodeid"] for s in scrape.series("pve_node_info")} == {"1", "2", "3", "4", "5"}
    assert scrape.series("pve_version_info")[0]["version"] == "9.0.10"
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=exporter.app.config.default_module.settings.host) == 1


def test_the_zero_and_deprecated_series_can_be_turned_off(sim: RunningSimulator, start_exporter: Any, tmp_path: Path) -> None:
    full = start_exporter({"default": module_block(sim, tmp_path / "token")}).scrape()
    lean = start_exporter({"default": module_block(sim, tmp_path / "token")},
                          CollectorOptions(deprecated=False, zeros=False)).scrape()
    assert [s for s in lean.series("pve_lock_state")] == [{"id": "qemu/140", "state": "backup"}]
    assert all(lean.value("pve_ha_state", **s) == 1 for s in lean.series("pve_ha_state"))
    assert lean.value("pve_ha_state", id="qemu/120", state="started") == 1
    assert not [s for s in lean.series("pve_disk_usage_bytes") if s["id"].startswith("qemu/")]
    assert full.value("pve_disk_usage_bytes", id="qemu/100") == 0
    assert "pve_network_receive_bytes" in full.names and "pve_network_receive_bytes" not in lean.names
    assert "pve_network_receive_bytes_total" in lean.names


def test_one_resources_call_plus_one_status_call_per_online_node(sim: RunningSimulator, exporter: RunningExporter) -> None:
    exporter.scrape()  # first scrape also learns the cluster name and version
    sim.set_node_online("pve4", False)
    sim.reset_request_counts()
    for _ in range(3):
        assert exporter.scrape().status == 200
    assert sim.request_counts() == {"GET /cluster/resources": 3, "GET /nodes/{node}/status": 3 * 4}


def test_replication_and_a_qdevice_cost_what_the_docs_say(start_exporter: Any, tmp_path: Path) -> None:
    # Jobs on guests of pve1 and pve2: one /nodes/{node}/replication each per scrape; the QDevice's
    # state every scrape; the job list once a minute; values as the simulator's jobs have them.
    with running_simulator(demo_with_replication(), time_scale=0) as sim:
        exporter = start_exporter({"default": module_block(sim, tmp_path / "token")})
        first = exporter.scrape()
        assert first.value("pve_replication_failed_syncs", id="113-0") == 2
        assert first.value("pve_replication_info", id="102-0", type="local", source="node/pve2", target="node/pve1",
                           guest="qemu/102") == 1
        assert first.value("pve_qdevice_up", id="cluster/demo") == 1
        sim.reset_request_counts()
        for _ in range(3):
            assert exporter.scrape().status == 200
        counts = sim.request_counts()
        assert counts["GET /nodes/{node}/replication"] == 3 * 2
        assert counts["GET /cluster/config/qdevice"] == 3
        assert "GET /cluster/replication" not in counts and "GET /nodes/{node}/replication/{id}/status" not in counts


def test_costly_collectors_are_off_by_default_and_cost_what_they_say(
    sim: RunningSimulator, start_exporter: Any, tmp_path: Path
) -> None:
    plain = start_exporter({"default": module_block(sim, tmp_path / "token")})
    assert not {"pve_node_pressure_ratio", "pve_onboot_status"} & plain.scrape().names
    full = start_exporter(
        {"default": module_block(sim, tmp_path / "token")}, CollectorOptions(pressure=True, config=True)
    )
    full.scrape()
    sim.reset_request_counts()
    scrape = full.scrape()
    counts = sim.request_counts()
    assert counts["GET /nodes/{node}/rrddata"] == 5
    assert counts["GET /nodes/{node}/qemu"] + counts["GET /nodes/{node}/lxc"] == len(
        {(g["node"], g["type"]) for g in api_get(sim, "/cluster/resources?type=vm") if g["status"] == "running"}
    )
    assert counts["GET /nodes/{node}/qemu/{vmid}/config"] + counts["GET /nodes/{node}/lxc/{vmid}/config"] == 60
    rrd = api_get(sim, "/nodes/pve1/rrddata?timeframe=hour&cf=AVERAGE")
    newest = [row for row in rrd if "pressurecpusome" in row][-1]
    assert scrape.value("pve_node_pressure_ratio", id="node/pve1", resource="cpu", kind="some") == pytest.approx(
        newest["pressurecpusome"] / 100
    )
    assert len(scrape.series("pve_onboot_status")) == 60
    # Each running guest's own PSI, as its node's guest list gives it; stopped guests have none.
    listed = {e["vmid"]: e for e in api_get(sim, "/nodes/pve1/qemu")}
    running = [v for v, e in listed.items() if e["status"] == "running"]
    stopped = [v for v, e in listed.items() if e["status"] != "running"]
    assert running
    for vmid in running:
        assert scrape.value("pve_guest_pressure_ratio", id=f"qemu/{vmid}", resource="cpu", kind="some") == pytest.approx(
            listed[vmid]["pressurecpusome"] / 100
        )
    assert not {f"qemu/{v}" for v in stopped} & {s["id"] for s in scrape.series("pve_guest_pressure_ratio")}
