"""Storage replication jobs: prometheus-pve-exporter's `pve_replication_*` families, for the whole cluster.

The peer asks its local node for the node's jobs and then each job's status (one call per job).
Here `/cluster/replication` (the job list, reused for `REPLICATION_MAX_AGE`) says which guests
are replicated; each online node holding one is asked once for its jobs, whose entries carry the
same state the per-job status call gives. A cluster without replication jobs costs one call a
minute; with jobs, one more call per scrape for each node that holds a replicated guest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from pveapi.inventory import Inventory

from ..scrape import Call, CallKey
from .base import ResultCollector
from .families import gauge

CONCERN = "replication"
# Jobs are added by hand, rarely; a new one shows up within this many seconds.
REPLICATION_MAX_AGE = 60.0
# (field of a job's state, family, help): what the peer exports per job, under its names.
STATE_GAUGES = (
    ("duration", "pve_replication_duration_seconds", "Seconds the job's last run took"),
    ("last_sync", "pve_replication_last_sync_timestamp_seconds", "When the job last synced (epoch seconds)"),
    ("last_try", "pve_replication_last_try_timestamp_seconds", "When the job last ran (epoch seconds)"),
    ("next_sync", "pve_replication_next_sync_timestamp_seconds", "When the job runs next (epoch seconds)"),
    ("fail_count", "pve_replication_failed_syncs", "Runs of the job that failed in a row"),
)


@dataclass(frozen=True)
class JobState:
    id: str
    type: str
    source: str
    target: str
    guest: str  # `qemu/100`
    values: Mapping[str, float]  # the STATE_GAUGES fields the answer has


def parse_replicated_guests(answer: Any) -> frozenset[int]:
    """The vmids /cluster/replication lists a job for."""
    return frozenset(int(entry["guest"]) for entry in answer)


def parse_node_jobs(answer: Any) -> tuple[JobState, ...]:
    """A node's /nodes/{node}/replication entries: each job and its state."""
    jobs = []
    for entry in answer:
        values = {}
        for field, _, _ in STATE_GAUGES:
            value = entry.get(field)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"job {entry.get('id')!r}: {field} is {value!r}, not a number")
                values[field] = value
        jobs.append(JobState(id=str(entry["id"]), type=str(entry["type"]), source=f"node/{entry['source']}",
                             target=f"node/{entry['target']}", guest=f"{entry['vmtype']}/{entry['guest']}",
                             values=values))
    return tuple(jobs)


class ReplicationCollector(ResultCollector):

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]:
        return (Call(CONCERN, "", "/cluster/replication", parse=parse_replicated_guests, max_age=REPLICATION_MAX_AGE),)

    @staticmethod
    def follow_up(inventory: Inventory, answers: Mapping[CallKey, Any]) -> Iterable[Call]:
        replicated = answers.get((CONCERN, ""))
        if not replicated:
            return ()
        holders = {guest.node for guest in inventory.guests if guest.vmid in replicated}
        return [Call(CONCERN, node.name, f"/nodes/{node.name}/replication", parse=parse_node_jobs)
                for node in inventory.nodes if node.online and node.name in holders]

    def collect(self) -> Iterator[Metric]:
        inventory = self._result.inventory
        if inventory is None:
            return
        jobs = [job for node in inventory.nodes
                for job in (self._result.answer(CONCERN, node.name) or ()) if isinstance(job, JobState)]
        if not jobs:
            return
        states = {field: gauge(name, text) for field, name, text in STATE_GAUGES}
        info = gauge("pve_replication_info", "Replication job info", ["id", "type", "source", "target", "guest"])
        for job in jobs:
            for field, value in job.values.items():
                states[field].add_metric([job.id], value)
            info.add_metric([job.id, job.type, job.source, job.target, job.guest], 1)
        yield from states.values()
        yield info
