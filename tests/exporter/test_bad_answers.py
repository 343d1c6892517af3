"""Answers that are not the documented shape (unit level: the simulator never sends them)."""

from __future__ import annotations

import json

import pytest
import responses
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import CollectorOptions, concerns
from exporter.collectors.self_metrics import SelfCollector
from exporter.config import ExporterConfig, Module
from exporter.http import ExporterApp, ServeOptions
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
        result = scrape(t, concerns(CollectorOptions()), 5)
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
        result = scrape(t, concerns(CollectorOptions()), 5)
    finally:
        t.close()
    assert not result.success
    assert result.error is not None and result.error.kind is ErrorKind.BAD_ANSWER
    assert "expected a list" in str(result.error)


GUEST = {"type": "qemu", "id": "qemu/100", "vmid": 100, "node": "a", "status": "running", "maxcpu": 2,
         "maxmem": 1024, "mem": 512, "cpu": 0.5, "name": "web"}
NESTED = "[" * 100_000 + "]" * 100_000
HOSTILE_RESOURCES = {
    "nan": '[{"type": "node", "id": "node/a", "node": "a", "status": "online", "maxcpu": 8, "maxmem": NaN}]',
    "infinity": '[{"type": "node", "id": "node/a", "node": "a", "status": "online", "maxcpu": Infinity, "maxmem": 1}]',
    "huge": '[{"type": "node", "id": "node/a", "node": "a", "status": "online", "maxcpu": 8, "maxmem": 1e308}]',
    "negative-infinity-cpu": '[{"type": "node", "id": "node/a", "node": "a", "status": "online", "cpu": -Infinity}]',
    "nested": NESTED,
    "nested-entry": '[{"type": "qemu", "id": "qemu/1", "vmid": 1, "node": "a", "name": ' + NESTED + '}]',
    "wrong-types": json.dumps([{**GUEST, "hastate": 5, "lock": {"a": 1}, "pool": [1], "tags": 7}]),
    "wrong-label-types": json.dumps([{**GUEST, "hastate": 5, "lock": {"a": 1}, "pool": [1], "name": 3}]),
    "wrong-vmid": json.dumps([{**GUEST, "vmid": [100]}]),
    "entry-not-object": '[1, 2]',
    "not-json": "<html>oops</html>",
}


@pytest.mark.parametrize("answer", HOSTILE_RESOURCES.values(), ids=HOSTILE_RESOURCES.keys())
@responses.activate
def test_a_hostile_resources_answer_is_a_scrape_never_a_500(answer: str) -> None:
    # Issue #10, item 4: these answers made the exporter answer HTTP 500.
    responses.get(f"{BASE}/cluster/resources", body='{"data": ' + answer + "}", content_type="application/json")
    responses.get(f"{BASE}/nodes/a/status", json={"data": {
        "loadavg": ["0.5", "0.4", "0.3"], "memory": {"free": 10}, "cpuinfo": {"cpus": 8}, "wait": 0.01}})
    responses.get(f"{BASE}/cluster/status", json={"data": [{"type": "cluster", "name": "c", "nodes": 1, "quorate": 1}]})
    responses.get(f"{BASE}/version", json={"data": {"version": "8.4.14", "release": "8.4", "repoid": "x"}})
    settings = ConnectionSettings(host="pve.test", user="monitor@pve", token_name="t", token_value=Secret("s"))
    app = ExporterApp(ExporterConfig({"default": Module("default", settings, ())}), ServeOptions(CollectorOptions()))
    statuses: list[str] = []
    try:
        body = b"".join(app({"PATH_INFO": "/metrics"}, lambda status, headers: statuses.append(status)))
    finally:
        app.close()
    assert statuses == ["200 OK"]
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    success = samples[("pvebalance_exporter_scrape_success", frozenset({("cluster", "pve.test")}))]
    if success == 0:  # refused: the reason is counted
        assert samples[("pvebalance_exporter_api_errors_total",
                        frozenset({("endpoint", "/cluster/resources"), ("kind", "bad_answer")}))] == 1
