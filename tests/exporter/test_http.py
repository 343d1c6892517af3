"""HTTP endpoints: multi-target /pve, /health, and what a wrong request gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from exporter.config import target_host
from tests.exporter.conftest import RunningExporter, module_block, parse_samples
from tests.support.sim import RunningSimulator, running_simulator

OTHER_CLUSTER = {
    "cluster": {"name": "branch"},
    "nodes": [{"name": "b1", "cores": 8, "memory": "32GiB", "version": "8.4.14"}],
    "guests": [{"vmid": 900, "type": "qemu", "name": "branch-web", "node": "b1", "cpus": 2, "memory": "2GiB",
                "tags": ["branch"]}],
}


def test_one_exporter_serves_several_clusters(sim: RunningSimulator, start_exporter: Any, tmp_path: Path) -> None:
    with running_simulator(OTHER_CLUSTER, time_scale=0) as other:
        # The second simulator has the same test token and its own certificate.
        block = module_block(sim, tmp_path / "token", targets=["127.0.0.1:*"])
        exporter = start_exporter({"default": block, "branch": module_block(other, tmp_path / "token2")})
        demo = exporter.scrape("/pve", target=sim.host)
        branch = exporter.scrape("/pve", target=other.host, module="branch")
        assert demo.value("pve_cluster_info", id="cluster/demo", nodes="5", quorate="1", version="8") == 1
        assert [(s["id"], s["nodes"]) for s in branch.series("pve_cluster_info")] == [("cluster/branch", "1")]
        assert branch.value("pve_cpu_usage_limit", id="qemu/900") == 2
        assert demo.value("pve_cpu_usage_limit", id="qemu/900") is None
        assert branch.value("pvebalance_exporter_scrape_success", cluster=other.host) == 1
        # Self-metrics are per target: the branch scrape does not report the demo's calls.
        assert branch.value("pvebalance_exporter_api_call_duration_seconds_count", endpoint="/nodes/{node}/status") == 1
        assert demo.value("pvebalance_exporter_api_call_duration_seconds_count", endpoint="/nodes/{node}/status") == 5


def test_target_not_allowed_by_the_module_is_refused(exporter: RunningExporter) -> None:
    # The module's token must not travel to a host the config does not name.
    response = exporter.get("/pve", target="attacker.example.com")
    assert response.status_code == 400
    assert "not allowed by module 'default'" in response.text
    assert len(response.text.strip().splitlines()) == 1


def test_unknown_module_names_the_configured_ones(exporter: RunningExporter) -> None:
    response = exporter.get("/pve", module="nope")
    assert response.status_code == 400
    assert response.text.strip() == "unknown module 'nope'; configured: default"


def test_pve_without_target_scrapes_the_module_host(sim: RunningSimulator, exporter: RunningExporter) -> None:
    scrape = exporter.scrape("/pve")
    assert scrape.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 1


def test_health_index_and_unknown_paths(sim: RunningSimulator, exporter: RunningExporter) -> None:
    sim.reset_request_counts()
    health = exporter.get("/health")
    assert (health.status_code, health.text, health.headers["Content-Type"]) == (
        200, "OK\n", "text/plain; charset=utf-8")
    assert sim.request_counts() == {}  # health does not call the API
    assert "/pve?target=" in exporter.get("/").text
    assert exporter.get("/nope").status_code == 404


def test_exposition_is_the_text_format(exporter: RunningExporter) -> None:
    response = exporter.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE pve_up gauge" in response.text


def test_answer_is_gzipped_when_asked_as_prometheus_does(exporter: RunningExporter) -> None:
    zipped = exporter.get("/metrics", headers={"Accept-Encoding": "gzip"})
    plain = exporter.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain.headers
    # Same series either way (requests decompresses); self-metrics differ between two scrapes.
    assert int(zipped.headers["Content-Length"]) < len(plain.content) / 3
    pve = {key: value for key, value in parse_samples(zipped.text).items() if key[0].startswith("pve_")}
    assert pve == {key: value for key, value in parse_samples(plain.text).items() if key[0].startswith("pve_")}
    assert len(pve) > 100


@pytest.mark.parametrize("separator", ["/", "#", "?"])
def test_a_target_that_only_looks_allowed_gets_no_token(
    sim: RunningSimulator, start_exporter: Any, tmp_path: Path, separator: str
) -> None:
    # `pve@HOST:PORT/.example.com` matches the glob as a string, but its host is HOST: the
    # token would go there (issue #10, item 1). Here HOST is the simulator, so a leak shows
    # up as requests it received.
    exporter = start_exporter({"default": module_block(sim, tmp_path / "token", host="pve1.example.com",
                                                       targets=["pve*.example.com"])})
    sim.reset_request_counts()
    response = exporter.get("/pve", target=f"pve@{sim.host}{separator}.example.com")
    assert response.status_code == 400
    assert "is not a host name or HOST:PORT" in response.text
    assert sim.request_counts() == {}


@pytest.mark.parametrize("target, host", [
    ("pve1.example.com", "pve1.example.com"),
    ("PVE1.example.com:8006", "pve1.example.com:8006"),
    ("10.0.0.1", "10.0.0.1"),
    ("[fd00::1]:8006", "[fd00::1]:8006"),
    ("https://pve1.example.com", None),
    ("pve1.example.com/x", None),
    ("pve1.example.com?x", None),
    ("pve1.example.com#x", None),
    ("user@pve1.example.com", None),
    ("user:pw@pve1.example.com", None),
    ("pve1.example.com:", None),
    ("pve1.example.com:99999", None),
    ("pve 1.example.com", None),
    ("pve1.example.com%00", None),
    ("", None),
])
def test_target_host_is_a_host_and_port_only(target: str, host: str | None) -> None:
    assert target_host(target) == host
