"""Scrapes of one target that overlap share one collection; a waiter never outlives its own deadline."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.exporter.conftest import RunningExporter, Scrape
from tests.support.sim import RunningSimulator

SCRAPERS = 10


def test_overlapping_scrapes_make_one_set_of_calls(sim: RunningSimulator, exporter: RunningExporter) -> None:
    exporter.scrape()  # the slow-changing facts (cluster status, version, ...) are cached now
    # /cluster/resources answers after a second, so all scrapes arrive while the first collects.
    sim.inject_fault({"type": "latency", "endpoint": "GET /cluster/resources", "seconds": 1.0})
    sim.reset_request_counts()
    with ThreadPoolExecutor(SCRAPERS) as pool:
        scrapes = list(pool.map(lambda _: exporter.scrape(), range(SCRAPERS)))
    counts = sim.request_counts()
    assert all(s.status == 200 and s.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 1
               for s in scrapes)
    assert len({s.text for s in scrapes}) < SCRAPERS  # shared answers, identical to the byte
    # Without sharing, every scrape asks: 10 calls. Scrapes that arrived after the first one
    # finished may start a second collection.
    assert counts["GET /cluster/resources"] <= 2, counts
    assert counts["GET /nodes/{node}/status"] <= 2 * 5, counts


def test_a_waiter_whose_deadline_passes_answers_on_time(sim: RunningSimulator, exporter: RunningExporter) -> None:
    sim.inject_fault({"type": "latency", "endpoint": "GET /cluster/resources", "seconds": 4.0})
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(exporter.scrape)
        while not sim.request_counts().get("GET /cluster/resources"):
            time.sleep(0.05)  # until the leader's call is out
        hurried = Scrape(requests.get(exporter.url + "/metrics", timeout=60,
                                      headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}))
        assert leader.result().value("pvebalance_exporter_scrape_success", cluster=sim.host) == 1
    assert hurried.status == 200
    assert hurried.value("pvebalance_exporter_scrape_success", cluster=sim.host) == 0
    assert hurried.value("pve_up", id="node/pve1") is None
