"""Answers that are not the documented shape (unit level: the simulator never sends them)."""

from __future__ import annotations

import responses
from prometheus_client import CollectorRegistry

from exporter.collectors import CollectorOptions
from exporter.collectors.self_metrics import SelfCollector
from exporter.scrape import NODE_STATUS, scrape
from exporter.target import Target
from pveapi.errors import ErrorKind
from pveapi.settings import ConnectionSettings, Secret

BASE = "https://pve.test:8006/api2/json"
NODE = {"type": "node", "status": "online", "maxcpu": 8, "maxmem": 1024}


def target() -> Target:
    settings = ConnectionSettings(host="pve.test", user="monitor@pve", token_name="t", token_value=Secret("s"))
    return Target(settings, max_workers=2)


@responses.activate
def test_garbled_node_status_fails_that_node_only() -> None:
    responses.get(f"{BASE}/cluster/resources", json={"data": [{**NODE, "id": "node/a", "node": "a"},
                                                              {**NODE, "id": "node/b", "node": "b"}]})
    responses.get(f"{BASE}/nodes/a/status", json={"data": {"loadavg": "high", "memory": {}}})
    responses.get(f"{BASE}/nodes/b/status", json={"data": {
        "loadavg": ["0.5", "0.4", "0.3"], "memory": {"free": 10}, "cpuinfo": {"cpus": 8}, "wait": 0.01}})
    responses.get(f"{BASE}/cluster/status", json={"data": [{"type": "cluster", "name": "c", "nodes": 2, "quorate": 1}]})
    responses.get(f"{BASE}/version", json={"data": {"version": "8.4.14", "release": "8.4", "repoid": "x"}})
    t = target()
    try:
        result = scrape(t, CollectorOptions().concerns(), 5)
    finally:
        t.close()
    assert result.success
    assert result.failures[(NODE_STATUS, "a")].kind is ErrorKind.BAD_ANSWER
    assert result.answer(NODE_STATUS, "b").load1 == 0.5
    registry = CollectorRegistry()
    registry.register(SelfCollector(result, t.stats))
    assert registry.get_sample_value("pvebalance_exporter_node_errors_total", {"id": "node/a"}) == 1
    assert registry.get_sample_value(
        "pvebalance_exporter_api_errors_total", {"endpoint": "/nodes/{node}/status", "kind": "bad_answer"}
    ) == 1


@responses.activate
def test_resources_that_are_not_a_list_fail_the_scrape_cleanly() -> None:
    responses.get(f"{BASE}/cluster/resources", json={"data": {"oops": 1}})
    t = target()
    try:
        result = scrape(t, CollectorOptions().concerns(), 5)
    finally:
        t.close()
    assert not result.success
    assert result.error is not None and result.error.kind is ErrorKind.BAD_ANSWER
    assert "expected a list" in str(result.error)
