"""/pools as pve-manager's Pool.pm answers it: create, update, delete, and their errors, through proxmoxer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

from tests.sim.conftest import MONITOR_TOKEN, token_api
from tests.support.sim import RunningSimulator


def _refused(call: Callable[..., object], *args: Any, **kwargs: Any) -> ResourceException:
    with pytest.raises(ResourceException) as caught:
        call(*args, **kwargs)
    return caught.value


def test_create_update_and_delete_a_pool(demo: RunningSimulator) -> None:
    api = token_api(demo)
    assert api.pools.post(poolid="lease", comment="held by a") is None
    assert api.pools.get(poolid="lease") == [{"poolid": "lease", "comment": "held by a", "members": []}]
    assert {"id": "/pool/lease", "type": "pool", "pool": "lease"} in api.cluster.resources.get()
    api.pools.put(poolid="lease", comment="held by b")
    assert api.pools("lease").get() == {"comment": "held by b", "members": []}  # the deprecated form
    api.pools("lease").put(comment="")  # defined, even empty, replaces it
    assert "comment" not in api.pools.get(poolid="lease")[0]
    api.pools.delete(poolid="lease")
    assert "lease" not in {p["poolid"] for p in api.pools.get()}
    assert {"id": "/pool/lease", "type": "pool", "pool": "lease"} not in api.cluster.resources.get()


def test_pool_errors_are_pve_s(demo: RunningSimulator) -> None:
    api = token_api(demo)
    exists = _refused(api.pools.post, poolid="prod")
    assert (exists.status_code, exists.content) == (500, "create pool failed: pool 'prod' already exists")
    missing = _refused(api.pools.put, poolid="nope", comment="x")
    assert (missing.status_code, missing.content) == (500, "update pools failed: pool 'nope' does not exist")
    gone = _refused(api.pools.delete, poolid="nope")
    assert (gone.status_code, gone.content) == (500, "delete pool failed: pool 'nope' does not exist")
    assert _refused(api.pools.get, poolid="nope").content == "pool 'nope' does not exist"
    full = _refused(api.pools.delete, poolid="prod")
    assert full.content == "delete pool failed: pool 'prod' is not empty (contains VM 100)"
    bad = _refused(api.pools.post, poolid="has space")
    assert bad.status_code == 400 and bad.errors == {"poolid": "invalid format - pool name 'has space' contains invalid characters"}
    digit = _refused(api.pools.post, poolid="1st")
    assert (digit.status_code, digit.content) == (500, "create pool failed: pool name must start with a letter")
    orphan = _refused(api.pools.post, poolid="a/b")
    assert orphan.content == "create pool failed: parent 'a' of pool 'a/b' does not exist"
    extra = _refused(api.pools.post, poolid="x", colour="red")
    assert extra.status_code == 400 and "colour" in extra.errors


def test_writing_pools_needs_pool_allocate(demo: RunningSimulator) -> None:
    monitor: ProxmoxAPI = token_api(demo, user=MONITOR_TOKEN[0], token_name=MONITOR_TOKEN[1], token_value=MONITOR_TOKEN[2])
    for call, kwargs in ((monitor.pools.post, {"poolid": "lease"}), (monitor.pools.put, {"poolid": "prod", "comment": "x"}),
                         (monitor.pools.delete, {"poolid": "prod"})):
        refused = _refused(call, **kwargs)
        pool = kwargs["poolid"]
        assert (refused.status_code, refused.content) == (403, f"Permission check failed (/pool/{pool}, Pool.Allocate)")
    # The permission is checked first: a missing pool is a 403 too, as PVE's method schema does it.
    assert _refused(monitor.pools.delete, poolid="nope").status_code == 403
    on_pool = monitor.access.permissions.get(path="/pool/lease")["/pool/lease"]
    assert on_pool["Pool.Audit"] == 1 and "Pool.Allocate" not in on_pool
