"""Storage replication jobs and a QDevice: the scenario keys `replication` and `qdevice`, and their answers.

Minimal on purpose: a job runs every `schedule` (`*/N`: every N minutes) from the guest's
current node to `target`; its status is derived from the clock (the last run at the most recent
multiple of the interval, `fail_count` failed runs before it left unsynced). What PVE answers for
a job, in `/nodes/{node}/replication` and `/nodes/{node}/replication/{id}/status` alike
(pve-manager's PVE::API2::Replication: the job's config, `vmtype`, `source`, and its state).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pveapi.errors import ConfigError
from pveapi.values import choice, count, mapping, number, reject_unknown, vmid

from .validation import MAX_SECONDS, listed, required

_SCHEDULE = re.compile(r"^\*/([1-9][0-9]*)$")
JOB_KEYS = ("guest", "target", "schedule", "fail_count", "duration", "comment")
QDEVICE_KEYS = ("host", "state", "algorithm", "tie_breaker")
QDEVICE_STATES = ("Connected", "Connect failed", "Disconnected")


@dataclass(frozen=True)
class ReplicationJob:
    guest: int
    jobnum: int  # the job's number among the guest's jobs: its id is `<guest>-<jobnum>`
    target: str
    schedule: str = "*/15"
    fail_count: int = 0
    duration: float = 2.5  # seconds a run takes
    comment: str = ""

    @property
    def id(self) -> str:
        return f"{self.guest}-{self.jobnum}"

    @property
    def interval(self) -> int:
        match = _SCHEDULE.match(self.schedule)
        assert match is not None  # checked by parse_replication
        return int(match.group(1)) * 60

    def config(self, source: str) -> dict[str, Any]:
        """The job as /cluster/replication lists it."""
        entry: dict[str, Any] = {"id": self.id, "type": "local", "guest": self.guest, "jobnum": self.jobnum,
                                 "target": self.target, "schedule": self.schedule, "source": source}
        if self.comment:
            entry["comment"] = self.comment
        return entry

    def status(self, source: str, vmtype: str, now: float) -> dict[str, Any]:
        """The job with its state, as a node's replication list and the job's status give it."""
        last_try = int(now) // self.interval * self.interval
        entry = {**self.config(source), "vmtype": vmtype, "last_try": last_try, "fail_count": self.fail_count,
                 "last_sync": last_try - self.fail_count * self.interval if self.fail_count else last_try,
                 "next_sync": last_try + self.interval, "duration": self.duration}
        if self.fail_count:
            entry["error"] = f"command 'zfs send' failed: exit code {self.fail_count}"
        return entry


@dataclass(frozen=True)
class QDevice:
    host: str
    state: str = "Connected"
    algorithm: str = "Fifty-Fifty split"
    tie_breaker: str = "Node with lowest node ID"

    def status(self, nodeid: int) -> dict[str, str]:
        """What /cluster/config/qdevice answers: corosync-qdevice-tool's `key: value` lines."""
        host = self.host if ":" in self.host else f"{self.host}:5403"
        return {"Node ID": str(nodeid), "Model": "Net", "QNetd host": host, "Algorithm": self.algorithm,
                "Tie-breaker": self.tie_breaker, "KAP Tie-breaker": "Enabled", "State": self.state}


def parse_replication(data: Any, where: str, guests: Mapping[int, str], nodes: set[str]) -> tuple[ReplicationJob, ...]:
    """The `replication` list; `guests` maps each vmid to its node."""
    jobs: list[ReplicationJob] = []
    for index, item in enumerate(listed(data or [], where)):
        at = f"{where}[{index}]"
        d = mapping(item, at)
        reject_unknown(d, JOB_KEYS, at)
        guest = vmid(required(d, "guest", at), f"{at}.guest")
        if guest not in guests:
            raise ConfigError(f"{at}.guest: no guest {guest} in the scenario; name one of its vmids")
        target = str(required(d, "target", at))
        if target not in nodes or target == guests[guest]:
            raise ConfigError(f"{at}.target: {target!r} must be another node of the scenario than the guest's")
        schedule = str(d.get("schedule", "*/15"))
        if not _SCHEDULE.match(schedule):
            raise ConfigError(f"{at}.schedule: only */N (every N minutes) is modelled, got {schedule!r}")
        jobs.append(ReplicationJob(
            guest=guest, jobnum=sum(job.guest == guest for job in jobs), target=target, schedule=schedule,
            fail_count=count(d.get("fail_count", 0), f"{at}.fail_count"),
            duration=number(d.get("duration", 2.5), f"{at}.duration", 0, MAX_SECONDS),
            comment=str(d.get("comment", "")),
        ))
    return tuple(jobs)


def parse_qdevice(data: Any, where: str) -> QDevice | None:
    if data is None:
        return None
    d = mapping(data, where)
    reject_unknown(d, QDEVICE_KEYS, where)
    state = choice(d.get("state", "Connected"), f"{where}.state", QDEVICE_STATES)
    return QDevice(host=str(required(d, "host", where)), state=state,
                   algorithm=str(d.get("algorithm", "Fifty-Fifty split")),
                   tie_breaker=str(d.get("tie_breaker", "Node with lowest node ID")))
