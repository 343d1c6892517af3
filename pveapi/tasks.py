"""Waiting for Proxmox tasks (migrations) to end."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxmoxer.tools import Tasks

from .client import PveClient
from .errors import ApiError, ErrorKind

# Errors while polling a task that do not end it: the task keeps running on its node.
TRANSIENT_KINDS = (ErrorKind.UNREACHABLE, ErrorKind.TIMEOUT, ErrorKind.REFUSED)
# The task type of a migration, by guest type.
MIGRATE_TASK = {"qemu": "qmigrate", "lxc": "vzmigrate"}


def exit_ok(status: str | None) -> bool:
    """A stopped task's exit status that means success: `OK` or `WARNINGS: N`."""
    return status is not None and (status == "OK" or status.startswith("WARNINGS"))


@dataclass(frozen=True)
class TaskResult:
    upid: str
    node: str
    type: str
    finished: bool
    exitstatus: str | None = None  # "OK", "WARNINGS: N" or the error text

    @property
    def ok(self) -> bool:
        return self.finished and exit_ok(self.exitstatus)


def _upid_field(upid: str, name: str, template: str) -> Any:
    try:
        return Tasks.decode_upid(upid)[name]
    except (IndexError, KeyError, AttributeError):
        raise ApiError(ErrorKind.BAD_ANSWER, template, f"not a UPID: {upid!r}") from None


def task_node(upid: str) -> str:
    return str(_upid_field(upid, "node", "/nodes/{node}/tasks/{upid}/status"))


def task_starttime(upid: str) -> int:
    """The task's start as a unix time, from its UPID (for `since=` in task lists)."""
    field = _upid_field(upid, "starttime", "/nodes/{node}/tasks")
    try:
        return int(field)
    except ValueError:
        raise ApiError(ErrorKind.BAD_ANSWER, "/nodes/{node}/tasks", f"not a UPID: {upid!r}") from None


def task_status(client: PveClient, upid: str) -> TaskResult:
    node = task_node(upid)
    data = client.get(f"/nodes/{node}/tasks/{upid}/status")
    finished = data.get("status") == "stopped"
    return TaskResult(upid, node, str(data.get("type", "")), finished, data.get("exitstatus") if finished else None)


# PVE's qemu migration log, every second while RAM is copied:
# `migration active, transferred 1.2 GiB of 8.0 GiB VM-state, 150.0 MiB/s`
_TRANSFERRED = re.compile(r"transferred (\d+(?:\.\d+)? [KMGTP]?i?B) of (\d+(?:\.\d+)? [KMGTP]?i?B)")


@dataclass(frozen=True)
class TaskLogTail:
    """What a task's log has said so far: lines read, and its last transfer progress."""

    lines: int = 0
    transferred: str | None = None  # `transferred 1.2 GiB of 8.0 GiB`


def read_task_log(client: PveClient, upid: str, tail: TaskLogTail) -> TaskLogTail:
    """The log lines after those `tail` has read (one call); a line without progress keeps the last."""
    answer = client.get(f"/nodes/{task_node(upid)}/tasks/{upid}/log", start=tail.lines, limit=500)
    if not isinstance(answer, list):
        raise ApiError(ErrorKind.BAD_ANSWER, "/nodes/{node}/tasks/{upid}/log", "expected a list of log lines")
    transferred = tail.transferred
    for entry in answer:
        found = _TRANSFERRED.search(str(entry.get("t", ""))) if isinstance(entry, dict) else None
        if found is not None:
            transferred = f"transferred {found[1]} of {found[2]}"
    return TaskLogTail(tail.lines + len(answer), transferred)


def wait_for_task(
    client: PveClient,
    upid: str,
    timeout: float,
    poll_interval: float = 2.0,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TaskResult:
    """Poll a task until it stops or `timeout` passes.

    A node that is briefly unreachable (595/596, timeouts) while we poll does not end the wait:
    the task keeps running on the node whatever happens to our connection.
    """
    deadline = clock() + timeout
    last = TaskResult(upid, task_node(upid), "", False)
    while True:
        try:
            last = task_status(client, upid)
        except ApiError as exc:
            if exc.kind not in TRANSIENT_KINDS:
                raise
        if last.finished or clock() >= deadline or should_stop():
            return last
        sleep(poll_interval)
