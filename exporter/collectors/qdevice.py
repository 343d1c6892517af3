"""The cluster's QDevice: prometheus-pve-exporter's `pve_qdevice_up` and `pve_qdevice_info`.

`/cluster/config/qdevice` answers an empty object on a cluster without a QDevice (most): that
answer is reused for `QDEVICE_ABSENT_MAX_AGE`, so such a cluster costs one call every 5 minutes;
with a QDevice the call is made every scrape, since its connection state is the point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory, cluster_id

from ..scrape import Call
from .base import ResultCollector
from .cluster import cluster_status
from .families import gauge

CONCERN = "qdevice"
QDEVICE_ABSENT_MAX_AGE = 300.0
# corosync-qdevice-tool's keys in the answer -> the peer's label names.
LABELS = {"Model": "model", "Algorithm": "algorithm", "QNetd host": "qnetd_host", "Tie-breaker": "tie_breaker",
          "State": "state"}


def parse_qdevice(answer: Any) -> Mapping[str, str]:
    """The QDevice's labels (empty when none is configured)."""
    if not isinstance(answer, Mapping):
        raise ValueError(f"expected an object, got {type(answer).__name__}")
    return {label: str(answer.get(key, "")) for key, label in LABELS.items()} if answer else {}


def _reuse(labels: Mapping[str, str]) -> float:
    return 0.0 if labels else QDEVICE_ABSENT_MAX_AGE


class QDeviceCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return (Call(CONCERN, "", "/cluster/config/qdevice", parse=parse_qdevice, max_age_of=_reuse),)

    def collect(self) -> Iterator[Metric]:
        labels = self._result.answer(CONCERN)
        status = cluster_status(self._result)
        if self._result.inventory is None or not labels or status is None or status.name is None:
            return
        cluster = cluster_id(status.name)
        up = gauge("pve_qdevice_up", "1 if the QDevice is connected")
        up.add_metric([cluster], 1 if labels["state"] == "Connected" else 0)
        info = gauge("pve_qdevice_info", "QDevice info", ["id", *LABELS.values()])
        info.add_metric([cluster, *labels.values()], 1)
        yield up
        yield info
