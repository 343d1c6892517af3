"""Cluster-wide endpoints: version, status, resources, HA, storage, access (pools: views_pools).

Permission checks and parameters are the schema's (apischema.py); handlers only filter lists.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from pveapi.inventory import HA_SID_PREFIX

from .failure import PveFailure
from .routing import Call, route


def repoid(version: str) -> str:
    return hashlib.sha1(version.encode()).hexdigest()[:16]


def version_info(version: str) -> dict[str, str]:
    return {"version": version, "release": ".".join(version.split(".")[:2]), "repoid": repoid(version)}


def digest(data: Any) -> str:
    return hashlib.sha1(repr(data).encode()).hexdigest()


@route("GET", "/version")
def get_version(call: Call) -> Any:
    return version_info(call.api.cluster.api_node.spec.version)


@route("GET", "/cluster/status")
def cluster_status(call: Call) -> Any:
    cluster = call.api.cluster
    entries: list[dict[str, Any]] = [{
        "type": "cluster", "id": "cluster", "name": cluster.scenario.cluster_name, "nodes": len(cluster.nodes),
        "version": 3 + len(cluster.nodes), "quorate": int(cluster.quorate),
    }]
    for index, (name, node) in enumerate(cluster.nodes.items()):
        entries.append({
            "type": "node", "id": f"node/{name}", "name": name, "nodeid": index + 1,
            "ip": node.spec.ip or f"10.0.0.{11 + index}", "local": int(node is cluster.api_node),
            "online": int(node.online), "level": "",
        })
    return entries


@route("GET", "/cluster/resources")
def cluster_resources(call: Call) -> Any:
    return call.api.resources.answer(call.now, call.params.get("type"), call.caller)


# Each node broadcasts its running tasks and its most recent finished ones, 25 in all
# (PVE::RESTEnvironment::active_workers); /cluster/tasks merges those lists.
TASKLIST_SIZE = 25


@route("GET", "/cluster/tasks")
def cluster_tasks(call: Call) -> Any:
    cluster = call.api.cluster
    see_all = call.caller.can("/", "Sys.Audit")
    answer = []
    by_node: dict[str, list[Any]] = {}
    for task in sorted(cluster.tasks.values(), key=lambda t: (t.starttime, t.pid), reverse=True):
        by_node.setdefault(task.node, []).append(task)
    for name in cluster.nodes:
        tasks = by_node.get(name, [])
        running = [t for t in tasks if t.status == "running"]
        finished = [t for t in tasks if t.status != "running"][:max(0, TASKLIST_SIZE - len(running))]
        for task in running + finished:
            entry = task.list_entry()
            user, _, token = task.user.partition("!")
            if token:
                entry.update(user=user, tokenid=token)
            # Without Sys.Audit only your own tasks, compared after the token split as PVE does
            # (so a token without it sees none).
            if see_all or entry["user"] == call.caller.userid:
                answer.append(entry)
    return answer


@route("GET", "/cluster/options")
def cluster_options(call: Call) -> Any:
    return {"keyboard": "en-us", **call.api.cluster.scenario.options}


@route("GET", "/cluster/backup-info/not-backed-up")
def not_backed_up(call: Call) -> Any:
    return [{"type": g.spec.type, "vmid": g.spec.vmid, "name": g.spec.name}
            for g in call.api.cluster.guests.values() if not g.spec.template]


def _ha_guests(call: Call) -> list[Any]:
    return [g for g in call.api.cluster.guests.values() if g.spec.ha is not None]


@route("GET", "/cluster/ha/resources")
def ha_resources(call: Call) -> Any:
    return [_ha_resource(call, g) for g in _ha_guests(call)]


@route("GET", "/cluster/ha/resources/{sid}")
def ha_resource(call: Call, sid: str) -> Any:
    for guest in _ha_guests(call):
        if guest.spec.sid == sid or str(guest.spec.vmid) == sid:
            return _ha_resource(call, guest)
    raise PveFailure(500, f"no such resource '{sid}'")


def _ha_resource(call: Call, guest: Any) -> dict[str, Any]:
    ha = guest.spec.ha
    entry = {"sid": guest.spec.sid, "type": HA_SID_PREFIX[guest.spec.type], "state": ha.state,
             "max_restart": ha.max_restart, "max_relocate": ha.max_relocate, "digest": digest(ha)}
    if ha.group and call.api.cluster.api_node.spec.major < 9:
        entry["group"] = ha.group
    if call.api.cluster.api_node.spec.major >= 9:
        entry["failback"] = 1
    return entry


def _ctime(t: float) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(t))


def _manager(call: Call) -> str:
    online = [n for n, s in call.api.cluster.nodes.items() if s.online]
    return online[0] if online else call.api.cluster.api_node.spec.name


@route("GET", "/cluster/ha/status/current")
def ha_status(call: Call) -> Any:
    cluster = call.api.cluster
    now = call.now
    entries: list[dict[str, Any]] = [{"id": "quorum", "type": "quorum", "node": cluster.api_node.spec.name,
                                      "status": "OK" if cluster.quorate else "No quorum on node",
                                      "quorate": int(cluster.quorate)}]
    guests = _ha_guests(call)
    if not guests:
        return entries
    master = _manager(call)
    entries.append({"id": "master", "type": "master", "node": master, "status": f"{master} (active, {_ctime(now)})",
                    "timestamp": int(now)})
    for name, node in cluster.nodes.items():
        mode = "maintenance mode" if node.maintenance else "active"
        status = f"{name} ({mode}, {_ctime(now)})" if node.online else f"{name} (old timestamp - dead?, {_ctime(now - 120)})"
        entries.append({"id": f"lrm:{name}", "type": "lrm", "node": name, "status": status, "timestamp": int(now)})
    for guest in guests:
        state = guest.hastate or "started"
        entries.append({
            "id": f"service:{guest.spec.sid}", "type": "service", "sid": guest.spec.sid, "node": guest.node,
            "state": state, "status": f"{guest.spec.sid} ({guest.node}, {state})", "crm_state": state,
            "request_state": guest.spec.ha.state, "max_restart": guest.spec.ha.max_restart,
            "max_relocate": guest.spec.ha.max_relocate, "failback": 1,
        })
    return entries


@route("GET", "/cluster/ha/status/manager_status")
def ha_manager_status(call: Call) -> Any:
    cluster = call.api.cluster
    now = int(call.now)
    master = _manager(call)
    node_status = {n: ("maintenance" if s.maintenance else "online") if s.online else "unknown"
                   for n, s in cluster.nodes.items()}
    services = {g.spec.sid: {"node": g.node, "state": g.hastate or "started", "uid": digest(g.spec.sid)[:22]}
                for g in _ha_guests(call)}
    return {
        "manager_status": {"master_node": master, "node_status": node_status, "service_status": services,
                           "timestamp": now},
        "lrm_status": {n: {"mode": "maintenance" if s.maintenance else "active",
                           "state": "active" if s.online else "dead", "timestamp": now, "results": {}}
                       for n, s in cluster.nodes.items()},
        "quorum": {"node": cluster.api_node.spec.name, "quorate": str(int(cluster.quorate))},
    }


@route("GET", "/cluster/ha/rules")
def ha_rules(call: Call) -> Any:
    return [{"order": i + 1, "digest": digest(rule), **rule} for i, rule in enumerate(call.api.cluster.scenario.ha_rules)]


@route("GET", "/cluster/ha/groups")
def ha_groups(call: Call) -> Any:
    return [{"type": "group", "digest": digest(g), **g} for g in call.api.cluster.scenario.ha_groups]


@route("GET", "/storage")
def storage_config(call: Call) -> Any:
    answer = []
    for s in call.api.cluster.scenario.storages:
        if not (call.caller.can(f"/storage/{s.name}", "Datastore.Audit")
                or call.caller.can(f"/storage/{s.name}", "Datastore.AllocateSpace")):
            continue
        entry: dict[str, Any] = {"storage": s.name, "type": s.type, "content": s.content, "shared": int(s.shared),
                                 "digest": digest(s)}
        if s.nodes is not None:
            entry["nodes"] = ",".join(s.nodes)
        answer.append(entry)
    return answer


@route("GET", "/access/permissions")
def permissions(call: Call) -> Any:
    return call.caller.permissions(call.params.get("path"))

