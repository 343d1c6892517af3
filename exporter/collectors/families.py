"""Metric family constructors shared by the collectors (most families are keyed by `id`)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

ID = ("id",)


def gauge(name: str, documentation: str, labels: Sequence[str] = ID) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def counter(name: str, documentation: str, labels: Sequence[str] = ID) -> CounterMetricFamily:
    """`name` without `_total`: prometheus-client appends it to the sample name."""
    return CounterMetricFamily(name, documentation, labels=labels)


def node_id(name: str) -> str:
    return f"node/{name}"
