"""/pools: list, read, create, update (comment) and delete resource pools, as pve-manager's
PVE/API2/Pool.pm answers them (PVE 8.1+: `?poolid=` on the collection; the `/pools/{poolid}`
forms are the deprecated ones, still served).

Permissions and parameters are checked first, from PVE's schema (apischema.py): Pool.Allocate on
`/pool/{poolid}` to create, update or delete. Errors from inside the user.cfg lock carry PVE's
prefix (`create pool failed: ...`). Guest members come from the scenario; adding or removing
members (`vms`, `storage`) is not simulated.
"""

from __future__ import annotations

from typing import Any

from .failure import PveFailure, not_implemented
from .resources import guest_entry
from .routing import Call, route

_MEMBER_PARAMS = {"vms", "storage", "delete", "allow-move"}


def _poolid(call: Call, path_poolid: str | None = None) -> str:
    """The pool named by the path or the parameters (the schema check has made sure there is one)."""
    return path_poolid if path_poolid is not None else call.params["poolid"]


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
        poolid = _poolid(call)
        return [{**_config(call, poolid), "poolid": poolid}]
    return [{"poolid": p, **({"comment": c} if c is not None else {})} for p, c in sorted(call.api.cluster.pools.items())
            if call.caller.can(f"/pool/{p}", "Pool.Audit")]


@route("GET", "/pools/{poolid}")
def pool(call: Call, poolid: str) -> Any:
    return _config(call, poolid)


@route("POST", "/pools")
def create_pool(call: Call) -> Any:
    poolid = _poolid(call)
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
    return _update(call, _poolid(call))


@route("PUT", "/pools/{poolid}")
def update_pool_deprecated(call: Call, poolid: str) -> Any:
    return _update(call, _poolid(call, poolid))


def _update(call: Call, poolid: str) -> Any:
    if _MEMBER_PARAMS & set(call.params):
        raise not_implemented(call.method, call.path + " (pool members are not simulated)")
    if poolid not in call.api.cluster.pools:
        raise PveFailure(500, f"update pools failed: pool '{poolid}' does not exist")
    if "comment" in call.params:  # defined, even empty, replaces it (user.cfg keeps no empty comment)
        call.api.cluster.pools[poolid] = call.params["comment"] or None
    return None


@route("DELETE", "/pools")
def delete_pool(call: Call) -> Any:
    return _delete(call, _poolid(call))


@route("DELETE", "/pools/{poolid}")
def delete_pool_deprecated(call: Call, poolid: str) -> Any:
    return _delete(call, _poolid(call, poolid))


def _delete(call: Call, poolid: str) -> Any:
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
