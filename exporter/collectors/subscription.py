"""Each online node's subscription: /nodes/{node}/subscription, asked once per `INFO_MAX_AGE`.

prometheus-pve-exporter's node mode reports the node it talks to; this reports every online node.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import Call
from .base import ResultCollector
from .cluster import INFO_MAX_AGE
from .families import gauge

CONCERN = "subscription"
STATUSES = ("new", "notfound", "active", "invalid", "expired", "suspended")


@dataclass(frozen=True)
class Subscription:
    level: str
    status: str
    next_due: float | None  # seconds since the epoch, UTC midnight of `nextduedate`


def parse_subscription(answer: Any) -> Subscription:
    due = answer.get("nextduedate")
    return Subscription(
        level=str(answer.get("level", "unknown")),
        status=str(answer.get("status", "unknown")),
        next_due=float(calendar.timegm(time.strptime(str(due), "%Y-%m-%d"))) if due else None,
    )


class SubscriptionCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return [
            Call(CONCERN, node.name, f"/nodes/{node.name}/subscription", parse=parse_subscription, max_age=INFO_MAX_AGE)
            for node in inventory.online_nodes
        ]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        info = gauge("pve_subscription_info", "1 for the node's subscription level", ["id", "level"])
        status = gauge("pve_subscription_status", "1 for the node's subscription status, 0 for the others", ["id", "status"])
        next_due = gauge("pve_subscription_next_due_timestamp_seconds", "When the subscription is next due (UTC)")
        for node in inventory.online_nodes:
            subscription = self._result.answer(CONCERN, node.name)
            if not isinstance(subscription, Subscription):
                continue
            info.add_metric([node.id, subscription.level], 1)
            for name in STATUSES:
                status.add_metric([node.id, name], 1 if subscription.status == name else 0)
            if subscription.next_due is not None:
                next_due.add_metric([node.id], subscription.next_due)
        yield from (info, status, next_due)
