"""The series the controller's PromQL reads are the ones the exporter writes (no Prometheus needed).

controller/promql.py asks for NEEDED_SERIES of every guest, selected by ID_SELECTOR and joined
`on(id)`: a rename or a lost label in the exporter fails here, not only in the slow stack test.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from controller.promql import ID_SELECTOR, NEEDED_SERIES, Statistic, history_queries
from exporter.collectors import CollectorOptions, cluster_registry
from exporter.collectors.families import encode
from exporter.scrape import ScrapeResult
from pveapi.inventory import Guest, Inventory, Node

INVENTORY = Inventory(
    nodes=(Node("pve1", True, 16, 64 << 30, cpu=0.25, mem=20 << 30), Node("pve2", False, 8, 32 << 30)),
    guests=(
        Guest(100, "qemu", "web", "pve1", "running", 2, 4 << 30, cpu=0.5, mem=3 << 30),
        Guest(101, "lxc", "db", "pve1", "running", 4, 8 << 30, cpu=0.1, mem=1 << 30),
        Guest(102, "qemu", "idle", "pve2", "stopped", 1, 1 << 30),
    ),
)


def rendered() -> dict[str, list[dict[str, str]]]:
    result = ScrapeResult(cluster="pve1", inventory=INVENTORY)
    text = encode(cluster_registry(result, CollectorOptions()).collect()).decode()
    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(sample.labels)
    return series


def test_every_guest_has_every_series_the_controller_needs() -> None:
    label, _, pattern = ID_SELECTOR.partition("=~")
    matcher = re.compile(pattern.strip('"'))
    series = rendered()
    for name in NEEDED_SERIES:
        ids = {labels[label] for labels in series.get(name, []) if matcher.fullmatch(labels.get(label, ""))}
        assert ids == {guest.id for guest in INVENTORY.guests}, name


def test_the_controller_queries_name_only_exported_series_and_labels() -> None:
    series = rendered()
    for what, query in history_queries("1h", Statistic()).items():
        for name in re.findall(r"\b(pve_[a-z_]+)\{", query):
            assert name in series, f"{what}: {name}"
        for labels in re.findall(r"(?:by|on)\s*\(([^)]*)\)", query):
            for label in (part.strip() for part in labels.split(",")):
                assert all(label in sample for sample in series["pve_memory_usage_bytes"]), f"{what}: {label}"
