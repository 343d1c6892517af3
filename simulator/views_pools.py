"""/pools: list, read, create, update (comment) and delete resource pools, as pve-manager's
PVE/API2/Pool.pm answers them (PVE 8.1+: `?poolid=` on the collection; the `/pools/{poolid}`
forms are the deprecated ones, still served).

Permissions are checked before anything else, as PVE's method schema does: Pool.Allocate on
`/pool/{poolid}` to create, update or delete. Errors from inside the user.cfg lock carry PVE's
prefix (`create pool failed: ...`). Guest members come from the scenario; adding or removing
members (`vms`, `storage`) is not simulated.
"""

from __future__ import annotations

import re
from typing import Any

from .failure import PveFailure, not_implemented, param_error
from .resources import guest_entry
from .routing import Call, route

# pve-access-control's verify_poolname: up to three levels of [A-Za-z0-9.-_]+ joined by '/'.
_POOLID = re.compile(r"^[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+){0,2}$")
_UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
_WRITE_PARAMS = {"poolid", "comment"}
_MEMBER_PARAMS = {"vms", "storage", "delete", "allow-move"}


def _poolid(call: Call, allowed: set[str], path_poolid: str | None = None) -> str:
    """The validated `poolid` parameter (from the path or the query/body), 400 as PVE's schema check."""
    params = dict(call.params)
    if path_poolid is not None:
        params["poolid"] = path_poolid
    errors = {k: _UNKNOWN for k in params if k not in allowed}
    poolid = params.get("poolid")
    if not poolid:
        errors["poolid"] = "property is missing and it is not optional"
    elif len(poolid.split("/")) > 3:
        errors["poolid"] = f"invalid format - pool name '{poolid}' nested too deeply (max levels = 3)"
    elif not _POOLID.match(poolid):
        errors["poolid"] = f"invalid format - pool name '{poolid}' contains invalid characters"
    if errors:
        raise param_error(errors)
    return str(poolid)


def _config(call: Call, poolid: str) -> dict[str, Any]:
    cluster = call.api.cluster
    if poolid not in cluster.pools:
        raise PveFailure(500, f"pool '{poolid}' does not exist")
    members = [guest_entry(cluster, g, call.now)
               for g in sorted((g for g in cluster.guests.values() if g.spec.pool == poolid), key=lambda g: str(g.spec.vmid))]
    answer: dict[str, Any] = {"members": members}
    if cluster.pools[poolid] is not None:
        answer["comment"] = cluster.pools[poolid]
    return answer


@route("GET", "/pools")
def pools(call: Call) -> Any:
    if call.params.get("poolid") is not None:
        # PVE checks Pool.Audit here with noerr and ignores the result: any user may read one pool.
        poolid = _poolid(call, {"poolid", "type"})
        return [{**_config(call, poolid), "poolid": poolid}]
    if call.params:
        raise param_error({k: "missing property - 'poolid'" if k == "type" else _UNKNOWN for k in call.params})
    return [{"poolid": p, **({"comment": c} if c is not None else {})} for p, c in sorted(call.api.cluster.pools.items())
            if call.caller.can(f"/pool/{p}", "Pool.Audit")]


@route("GET", "/pools/{poolid}")
def pool(call: Call, poolid: str) -> Any:
    call.caller.require(f"/pool/{poolid}", "Pool.Audit")
    return _config(call, poolid)


@route("POST", "/pools")
def create_pool(call: Call) -> Any:
    poolid = _poolid(call, _WRITE_PARAMS)
    call.caller.require(f"/pool/{poolid}", "Pool.Allocate")
    pools_now = call.api.cluster.pools
    if poolid in pools_now:
        raise PveFailure(500, f"create pool failed: pool '{poolid}' already exists")
    parent, _, leaf = poolid.rpartition("/")
    if parent and parent not in pools_now:
        raise PveFailure(500, f"create pool failed: parent '{parent}' of pool '{poolid}' does not exist")
    if not leaf[:1].isalpha():
        raise PveFailure(500, "create pool failed: pool name must start with a letter")
    pools_now[poolid] = call.params.get("comment") or None
    call.api.cluster.version += 1
    return None


@route("PUT", "/pools")
def update_pool(call: Call) -> Any:
    return _update(call, _poolid(call, _WRITE_PARAMS | _MEMBER_PARAMS))


@route("PUT", "/pools/{poolid}")
def update_pool_deprecated(call: Call, poolid: str) -> Any:
    return _update(call, _poolid(call, _WRITE_PARAMS | _MEMBER_PARAMS, poolid))


def _update(call: Call, poolid: str) -> Any:
    call.caller.require(f"/pool/{poolid}", "Pool.Allocate")
    if _MEMBER_PARAMS & set(call.params):
        raise not_implemented(call.method, call.path + " (pool members are not simulated)")
    if poolid not in call.api.cluster.pools:
        raise PveFailure(500, f"update pools failed: pool '{poolid}' does not exist")
    if "comment" in call.params:  # defined, even empty, replaces it (user.cfg keeps no empty comment)
        call.api.cluster.pools[poolid] = call.params["comment"] or None
    return None


@route("DELETE", "/pools")
def delete_pool(call: Call) -> Any:
    return _delete(call, _poolid(call, {"poolid"}))


@route("DELETE", "/pools/{poolid}")
def delete_pool_deprecated(call: Call, poolid: str) -> Any:
    return _delete(call, _poolid(call, {"poolid"}, poolid))


def _delete(call: Call, poolid: str) -> Any:
    call.caller.require(f"/pool/{poolid}", "Pool.Allocate")
    cluster = call.api.cluster
    if poolid not in cluster.pools:
        raise PveFailure(500, f"delete pool failed: pool '{poolid}' does not exist")
    child = min((c for c in cluster.pools if c.startswith(poolid + "/")), default=None)
    if child is not None:
        raise PveFailure(500, f"delete pool failed: pool '{poolid}' is not empty (contains pool '{child}')")
    vmid = min((str(g.spec.vmid) for g in cluster.guests.values() if g.spec.pool == poolid), default=None)
    if vmid is not None:
        raise PveFailure(500, f"delete pool failed: pool '{poolid}' is not empty (contains VM {vmid})")
    del cluster.pools[poolid]
    cluster.version += 1
    return None
