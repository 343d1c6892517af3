"""prometheus-pve-exporter 3.10 (a peer we measure against) scrapes the simulator without error.

It is installed from bench/requirements.txt by scripts/test.sh; its collectors run in-process
against the simulator over HTTPS, exactly as its HTTP handler would call them.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.sim.conftest import token_api
from tests.support.sim import RunningSimulator

# bench/requirements.txt installs it only on Python >= 3.11, which it requires.
# A series' labels, sorted name-value pairs.
Labels = tuple[tuple[str, str], ...]

collector = pytest.importorskip("pve_exporter.collector", reason="prometheus-pve-exporter needs Python >= 3.11")


def scrape(sim: RunningSimulator, cluster: str = "1", node: str = "1") -> dict[str, dict[Labels, float]]:
    config = {"user": sim.token_user, "token_name": sim.token_name, "token_value": sim.token_value,
              "verify_ssl": sim.ca_path}
    options = collector.CollectorsOptions(status=True, version=True, subscription=True, node=True, cluster=True,
                                          resources=True, backup_info=True, config=True, replication=True,
                                          qdevice=True)
    text = collector.collect_pve(config, sim.host, cluster, node, options).decode()
    metrics: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metrics.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return metrics


def value(metrics: dict[str, dict[Labels, float]], metric: str, **labels: str) -> float:
    wanted = set(labels.items())
    matches = [v for k, v in metrics[metric].items() if wanted <= set(k)]
    assert len(matches) == 1, f"{metric}{labels}: {len(matches)} series"
    return matches[0]


def test_pve_exporter_scrapes_the_demo(frozen_demo: RunningSimulator) -> None:
    metrics = scrape(frozen_demo)
    api = token_api(frozen_demo)
    resources = {r["id"]: r for r in api.cluster.resources.get()}
    assert value(metrics, "pve_up", id="node/pve1") == 1
    assert value(metrics, "pve_up", id="cluster/demo") == 1
    assert value(metrics, "pve_up", id="qemu/132") == 0  # the stopped template
    assert value(metrics, "pve_cpu_usage_ratio", id="node/pve1") == resources["node/pve1"]["cpu"]
    assert value(metrics, "pve_memory_usage_bytes", id="qemu/100") == resources["qemu/100"]["mem"]
    assert value(metrics, "pve_cpu_usage_limit", id="node/pve4") == 16
    assert value(metrics, "pve_guest_info", id="qemu/100", name="web01", node="pve1",
                 tags="plb_anti_affinity_web;prod;web") == 1
    assert value(metrics, "pve_ha_state", id="qemu/120", state="started") == 1
    assert value(metrics, "pve_lock_state", id="qemu/140", state="backup") == 1
    assert value(metrics, "pve_storage_info", id="storage/pve1/ceph", plugintype="rbd") == 1
    assert value(metrics, "pve_node_info", id="node/pve3", name="pve3", nodeid="3") == 1
    assert value(metrics, "pve_cluster_info", id="cluster/demo", quorate="1") == 1
    assert value(metrics, "pve_version_info", version="9.0.10") == 1
    assert value(metrics, "pve_not_backed_up_total", id="cluster/demo") == 59  # every guest but the template
    assert value(metrics, "pve_subscription_status", id="node/pve1", status="notfound") == 1
    assert value(metrics, "pve_onboot_status", id="qemu/100") == 1
    assert len(metrics["pve_guest_info"]) == 60


def test_pve_exporter_sees_a_migration(demo: RunningSimulator) -> None:
    token_api(demo).nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    demo.advance(60)
    metrics = scrape(demo)
    assert value(metrics, "pve_guest_info", id="qemu/100", node="pve5") == 1
