"""CPU and storage compatibility, read only for the guests a plan wants to move.

/cluster/resources says which storages each node has, not a guest's CPU type or disk
storages, nor a node's CPU model and flags. Those come from one guest config per guest a plan
moves and, once some such guest has `cpu: host` or a named model (pveapi/cpumodels.py), one
node status per online node: API calls stay bounded
by the plan, not the cluster. The planner then keeps each guest off nodes it cannot run on
(planner/constraints.py `incompatible`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

import structlog

from planner.model import ClusterModel, Plan
from pveapi.client import PveClient
from pveapi.cpumodels import parse_flags, required_flags
from pveapi.errors import ApiError
from pveapi.guestconfig import parse_guest_config
from pveapi.inventory import HOST_CPU, Node

log = structlog.get_logger("pvebalance.compat")


def plan_described(
    client: PveClient, model: ClusterModel, make_plan: Callable[[ClusterModel], Plan], notes: list[str]
) -> tuple[ClusterModel, Plan]:
    """Plan, read what the moved guests need, and plan again until every moved guest is described."""
    plan = make_plan(model)
    while True:
        described = describe(client, model, (m.vmid for m in plan.moves), notes)
        if described is model:
            return model, plan
        model = described
        plan = make_plan(model)


def describe(client: PveClient, model: ClusterModel, vmids: Iterable[int], notes: list[str]) -> ClusterModel:
    """`model` with the CPU type and disk storages (and sizes) of `vmids` read (those not read yet), and the
    node CPU models and flags once a `cpu: host` or named-model guest is among them; `model` itself when nothing new."""
    wanted = set(vmids)
    guests = list(model.guests)
    changed = False
    for i, guest in enumerate(guests):
        if guest.vmid not in wanted or guest.disk_storages is not None:
            continue
        try:
            needs = parse_guest_config(client.get(f"/nodes/{guest.node}/{guest.type}/{guest.vmid}/config"))
        except ApiError as exc:
            _note(notes, f"guest configs not read, CPU type and storage not checked for some guests: {exc}")
            needs = None
        guests[i] = replace(guest, cputype=needs.cputype if needs else None,
                            disk_storages=needs.storages if needs else frozenset(),
                            disk_bytes=needs.disk_bytes if needs else ())
        changed = True
    if not changed:
        return model
    nodes = model.nodes
    if any(_needs_node_cpu(g.cputype) for g in guests) and any(n.online and n.cpu_model is None for n in nodes):
        nodes = tuple(_with_cpu_model(client, n, notes) for n in nodes)
    return replace(model, guests=tuple(guests), nodes=nodes)


def keep_described(base: ClusterModel, model: ClusterModel) -> ClusterModel:
    """`model` (a fresh reading) with what `base` had read of CPU types, storages and models."""
    guests = {g.vmid: g for g in base.guests}
    models = {n.name: (n.cpu_model, n.cpu_flags) for n in base.nodes}
    return replace(
        model,
        guests=tuple(replace(g, cputype=guests[g.vmid].cputype, disk_storages=guests[g.vmid].disk_storages,
                             disk_bytes=guests[g.vmid].disk_bytes)
                     if g.vmid in guests else g for g in model.guests),
        nodes=tuple(replace(n, cpu_model=models.get(n.name, (None, None))[0], cpu_flags=models.get(n.name, (None, None))[1])
                    for n in model.nodes),
    )


def _with_cpu_model(client: PveClient, node: Node, notes: list[str]) -> Node:
    if not node.online or node.cpu_model is not None:
        return node
    try:
        cpuinfo = client.get(f"/nodes/{node.name}/status")["cpuinfo"]
        model = str(cpuinfo["model"])
    except (ApiError, KeyError, TypeError) as exc:
        _note(notes, f"CPU model of {node.name} not read, `cpu: host` and named-model guests are not checked against it: {exc}")
        return node
    flags = parse_flags(cpuinfo.get("flags")) if isinstance(cpuinfo, Mapping) else None
    if flags is None:
        _note(notes, f"CPU flags of {node.name} not reported, named-model guests (x86-64-v3, ...) are not checked against it")
    return replace(node, cpu_model=model, cpu_flags=flags)


def _needs_node_cpu(cputype: str | None) -> bool:
    """Whether placing a guest of this CPU type needs the nodes' CPU model and flags."""
    return cputype == HOST_CPU or required_flags(cputype) is not None


def _note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)
        log.warning("compat.unread", message=note)
