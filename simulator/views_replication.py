"""Replication jobs and the QDevice: /cluster/replication, /nodes/{node}/replication..., /cluster/config/qdevice.

Jobs are listed only for callers with VM.Audit on the guest, as PVE does; a node lists the jobs
of the guests it holds now (PVE's job_status: replication follows the guest).
"""

from __future__ import annotations

from typing import Any

from .failure import PveFailure
from .replication import ReplicationJob
from .routing import Call, route


def _visible(call: Call) -> list[tuple[ReplicationJob, str, str]]:
    """(job, the guest's node, its type) for each job the caller may see."""
    guests = call.api.cluster.guests
    return [(job, guests[job.guest].node, guests[job.guest].spec.type) for job in call.api.cluster.scenario.replication
            if job.guest in guests and call.caller.can(f"/vms/{job.guest}", "VM.Audit")]


@route("GET", "/cluster/replication")
def cluster_replication(call: Call) -> Any:
    return [job.config(node) for job, node, _ in _visible(call)]


@route("GET", "/nodes/{node}/replication")
def node_replication(call: Call, node: str) -> Any:
    call.api.cluster.node(node)
    guest = call.params.get("guest")
    return [job.status(source, vmtype, call.now) for job, source, vmtype in _visible(call)
            if source == node and (guest is None or str(job.guest) == guest)]


@route("GET", "/nodes/{node}/replication/{id}/status")
def node_replication_status(call: Call, node: str, id: str) -> Any:  # noqa: A002 - the API's parameter name
    call.api.cluster.node(node)
    for job, source, vmtype in _visible(call):
        if job.id == id and source == node:
            return job.status(source, vmtype, call.now)
    raise PveFailure(500, f"no such replication job '{id}'")


@route("GET", "/cluster/config/qdevice")
def qdevice(call: Call) -> Any:
    device = call.api.cluster.scenario.qdevice
    if device is None:
        return {}  # PVE answers an empty object when no QDevice daemon runs
    nodeid = list(call.api.cluster.nodes).index(call.api.cluster.api_node.spec.name) + 1
    return device.status(nodeid)
