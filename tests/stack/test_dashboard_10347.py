"""Grafana dashboard 10347 "Proxmox via Prometheus", the community's dashboard for
prometheus-pve-exporter, shows data on pvebalance-exporter: all 25 panel queries and its
`instance` variable return series through a real Prometheus scraping the exporter over the
simulator.

The expressions are copied by hand from proxmox-via-prometheus.json in
github.com/mittelab/proxmox-via-prometheus-dashboard (commit c6fa49b, the revision on
grafana.com), `$instance` substituted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.collectors import CollectorOptions
from exporter.http import ServeOptions
from testkit.prometheus import RunningPrometheus, running_prometheus
from tests.exporter.conftest import RunningExporter, module_block, write_config
from tests.support.sim import running_simulator

INSTANCE_VARIABLE = "group by (instance) (pve_node_info)"  # label_values(pve_node_info, instance)
PANEL_QUERIES = [
    # Resource allocation summary
    'sum by (id, name, type) (pve_guest_info{instance="$instance"})',
    'sum by (id) (pve_up{instance="$instance"} and on (id, instance) pve_guest_info)',
    'sum by (id) (pve_cpu_usage_limit{instance="$instance"} and on (id, instance) pve_guest_info)',
    'sum by (id) (pve_memory_size_bytes{instance="$instance"} and on (id, instance) pve_guest_info)',
    'sum by (id) (pve_memory_usage_bytes{instance="$instance",template!="1"} / pve_memory_size_bytes'
    ' and on (id, instance) pve_guest_info and on (id) pve_up==1)',
    'sum by (id) (pve_disk_size_bytes{instance="$instance"} and on (id, instance) pve_guest_info)',
    'sum by (id) (pve_disk_usage_bytes{instance="$instance"} / pve_disk_size_bytes'
    ' and on (id, instance) pve_guest_info{type="lxc"})',
    # CPU history, Current CPU
    'pve_cpu_usage_ratio{instance="$instance"} and on(id) pve_node_info',
    'pve_cpu_usage_limit{instance="$instance"} and on(id) pve_node_info',
    'pve_cpu_usage_ratio{instance="$instance"} / pve_cpu_usage_limit and on(id) pve_node_info',
    "pve_cpu_usage_limit and on(id) pve_node_info",
    # Memory history, Current memory
    'pve_memory_usage_bytes{instance="$instance"} and on(id) pve_node_info',
    'pve_memory_size_bytes{instance="$instance"} and on(id) pve_node_info',
    'pve_memory_usage_bytes{instance="$instance"} / pve_memory_size_bytes and on(id) pve_node_info',
    'pve_memory_usage_bytes{instance="$instance"} and on(id) pve_node_info',
    'pve_memory_size_bytes{instance="$instance"} and on(id) pve_node_info',
    'pve_memory_size_bytes{instance="$instance"} and on(id) pve_node_info',
    # Guests CPU usage, Guests memory usage
    '((pve_cpu_usage_ratio{instance="$instance"} / pve_cpu_usage_limit) * on(id, instance) group_left(name, type)'
    ' pve_guest_info) and on(id, instance) pve_up == 1',
    '(pve_memory_usage_bytes{instance="$instance"} / pve_memory_size_bytes * on(id, instance) group_left(name, type)'
    ' pve_guest_info) and on(id, instance) pve_up == 1',
    # Storage usage, Space allocation, LXC guests Disk usage
    'pve_disk_usage_bytes{instance="$instance", id=~"storage/.+"} / pve_disk_size_bytes'
    " * on (id, instance) group_left(storage) pve_storage_info",
    'pve_disk_size_bytes{instance="$instance", id=~"storage/.+"} * on (id, instance) group_left(storage) pve_storage_info',
    'pve_disk_usage_bytes{instance="$instance"} / pve_disk_size_bytes{instance="$instance"}'
    ' * on (id, instance) group_left(name, type) pve_guest_info{type="lxc"}',
    # Network IO/s (the deprecated byte gauges)
    '(rate(pve_network_receive_bytes{instance="$instance"}[5m]) * on(id, instance) group_left(name, type)'
    " pve_guest_info) and on(id, instance) pve_up == 1",
    '(rate(pve_network_transmit_bytes{instance="$instance"}[5m])* on(id, instance) group_left(name, type)'
    " pve_guest_info) and on(id, instance) pve_up == 1",
    # Disk IO/s
    '((rate(pve_disk_write_bytes{instance="$instance"}[5m]) + rate(pve_disk_read_bytes[5m]))'
    " * on(id, instance) group_left(name, type) pve_guest_info) and on(id, instance) pve_up == 1",
]
SCRAPES_FOR_RATE = 3  # rate() needs two samples in its window; one more for margin


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPrometheus, str]]:
    tmp = tmp_path_factory.mktemp("dashboard-10347")
    with running_simulator("demo", time_scale=60) as sim:
        exporter = RunningExporter(write_config(tmp / "exporter.yml", {"default": module_block(sim, tmp / "token")}),
                                   ServeOptions(CollectorOptions(), max_workers=4))
        address = exporter.url.removeprefix("http://")
        try:
            scrape = {"job_name": "pve", "scrape_interval": "1s", "scrape_timeout": "1s",
                      "static_configs": [{"targets": [address]}]}
            with running_prometheus(tmp / "data", scrape_configs=[scrape]) as prom:
                for _ in range(600):  # bounded: 60 s
                    counts = prom.query("count_over_time(pve_up{id=\"node/pve1\"}[5m])")
                    if counts and float(counts[0]["value"][1]) >= SCRAPES_FOR_RATE:
                        break
                    time.sleep(0.1)
                yield prom, address
        finally:
            exporter.stop()


def test_the_instance_variable_lists_the_exporter(prometheus: tuple[RunningPrometheus, str]) -> None:
    prom, address = prometheus
    assert [r["metric"]["instance"] for r in prom.query(INSTANCE_VARIABLE)] == [address]


def test_there_are_25_panel_queries() -> None:
    assert len(PANEL_QUERIES) == 25


@pytest.mark.parametrize("query", PANEL_QUERIES)
def test_every_panel_query_returns_data(prometheus: tuple[RunningPrometheus, str], query: str) -> None:
    prom, address = prometheus
    assert prom.query(query.replace("$instance", address)), query
