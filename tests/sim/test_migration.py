"""Migrations as real asynchronous tasks: round trips, refusals, HA, failures and offline nodes."""

from __future__ import annotations

from typing import Any

import pytest
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException
from proxmoxer.tools import Tasks

from pveapi.client import PveClient
from pveapi.tasks import wait_for_task
from tests.sim.conftest import token_api
from tests.support.sim import RunningSimulator


def resource(api: ProxmoxAPI, vmid: int) -> dict[str, Any]:
    return next(r for r in api.cluster.resources.get(type="vm") if r["vmid"] == vmid)


def node_mem(api: ProxmoxAPI, node: str) -> int:
    mem: int = next(r for r in api.cluster.resources.get(type="node") if r["node"] == node)["mem"]
    return mem


def test_qemu_round_trip_with_task_polling(demo: RunningSimulator) -> None:
    # At the start of a 5-minute burst window and a 1-minute noise step, so the other guests'
    # loads are the same before and after the 33 s the migration takes.
    demo.set_time(demo.clock() // 300 * 300 + 1)
    api = token_api(demo)
    before_source, before_target = node_mem(api, "pve1"), node_mem(api, "pve5")
    guest_mem = resource(api, 100)["mem"]
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    decoded = Tasks.decode_upid(upid)
    assert (decoded["node"], decoded["type"], decoded["id"]) == ("pve1", "qmigrate", "100")
    assert upid.endswith(":root@pam!test:") and len(upid.split(":")) == 9  # tokens: the full token id
    running = api.nodes("pve1").tasks(upid).status.get()
    assert running["status"] == "running" and "exitstatus" not in running
    assert resource(api, 100)["lock"] == "migrate"
    demo.advance(3)
    assert api.nodes("pve1").tasks(upid).status.get()["status"] == "running"  # 16 GiB at 1 GiB/s + 4 s
    demo.advance(30)
    done = api.nodes("pve1").tasks(upid).status.get()
    assert (done["status"], done["exitstatus"], done["type"]) == ("stopped", "OK", "qmigrate")
    moved = resource(api, 100)
    assert moved["node"] == "pve5" and "lock" not in moved and moved["uptime"] > 0  # online: no restart
    assert node_mem(api, "pve5") - before_target == pytest.approx(guest_mem, rel=0.1)
    assert before_source - node_mem(api, "pve1") == pytest.approx(guest_mem, rel=0.1)
    assert demo.placement()[100] == "pve5"
    assert api.nodes("pve5").qemu(100).status.current.get()["status"] == "running"
    with pytest.raises(ResourceException):
        api.nodes("pve1").qemu(100).status.current.get()  # no longer there


def test_lxc_restart_migration_round_trip_through_pveapi(demo: RunningSimulator) -> None:
    demo.set_time_scale(600)  # let real polling see the task end
    client = PveClient(demo.connection_settings())
    upid = client.post("/nodes/pve1/lxc/108/migrate", target="pve5", restart=1)
    result = wait_for_task(client, upid, timeout=30, poll_interval=0.05)
    assert result.finished and result.ok and result.type == "vzmigrate"
    ct = next(g for g in client.resources().guests if g.vmid == 108)
    assert ct.node == "pve5" and ct.running and ct.uptime < 60  # a restart migration restarts the CT


def test_lxc_online_migration_fails_as_on_pve(demo: RunningSimulator) -> None:
    api = token_api(demo)
    upid = api.nodes("pve1").lxc(108).migrate.post(target="pve5", online=1)
    status = api.nodes("pve1").tasks(upid).status.get()
    assert status["exitstatus"] == "lxc live migration is currently not implemented"
    assert demo.placement()[108] == "pve1"


@pytest.mark.parametrize(
    ("node", "kind", "vmid", "params", "status", "message"),
    [
        ("pve1", "qemu", 100, {"target": "pve2"}, 500, "can't migrate running VM without --online"),
        ("pve1", "lxc", 108, {"target": "pve2"}, 500, "can't migrate running container without --online or --restart"),
        ("pve3", "qemu", 130, {"target": "pve2", "online": 1}, 500,
         "can't live migrate attached local disks without with-local-disks option (local disk 'local-lvm:vm-130-disk-0')"),
        ("pve4", "qemu", 140, {"target": "pve5", "online": 1}, 500, "VM is locked (backup)"),
        ("pve1", "qemu", 100, {"target": "pve9", "online": 1}, 500, "no such cluster node 'pve9'"),
        ("pve1", "qemu", 100, {"target": "pve1", "online": 1}, 400, "Parameter verification failed."),
        ("pve1", "qemu", 100, {"online": 1}, 400, "Parameter verification failed."),
        ("pve2", "qemu", 100, {"target": "pve3", "online": 1}, 500,
         "Configuration file 'nodes/pve2/qemu-server/100.conf' does not exist"),
    ],
)
def test_refused_migrations_start_no_task(frozen_demo: RunningSimulator, node: str, kind: str, vmid: int,
                                          params: dict[str, Any], status: int, message: str) -> None:
    api = token_api(frozen_demo)
    before = len(frozen_demo.tasks())
    with pytest.raises(ResourceException) as caught:
        getattr(api.nodes(node), kind)(vmid).migrate.post(**params)
    assert (caught.value.status_code, caught.value.content) == (status, message)
    assert len(frozen_demo.tasks()) == before
    assert "lock" not in resource(api, vmid) or vmid == 140


def test_migration_to_an_offline_node_is_refused(demo: RunningSimulator) -> None:
    demo.set_node_online("pve5", False)
    with pytest.raises(ResourceException) as caught:
        token_api(demo).nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    assert caught.value.content == "Unable to get IP for node 'pve5' - node offline?"


def test_local_disks_migrate_with_the_flag_and_take_longer(demo: RunningSimulator) -> None:
    api = token_api(demo)
    upid = api.nodes("pve3").qemu(130).migrate.post(target="pve5", online=1, **{"with-local-disks": 1})
    demo.advance(30)  # 16 GiB memory + 200 GiB disk at 1 GiB/s: not yet
    assert api.nodes("pve3").tasks(upid).status.get()["status"] == "running"
    demo.advance(200)
    assert api.nodes("pve3").tasks(upid).status.get()["exitstatus"] == "OK"
    assert demo.placement()[130] == "pve5"


def test_a_locked_guest_cannot_start_a_second_migration(demo: RunningSimulator) -> None:
    api = token_api(demo)
    api.nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").qemu(100).migrate.post(target="pve4", online=1)
    assert caught.value.content == "VM is locked (migrate)"


def test_ha_migration_goes_through_hamigrate_then_qmigrate(demo: RunningSimulator) -> None:
    api = token_api(demo)
    upid = api.nodes("pve2").qemu(120).migrate.post(target="pve3", online=1)
    assert Tasks.decode_upid(upid)["type"] == "hamigrate"
    demo.advance(2)
    ha_task = api.nodes("pve2").tasks(upid).status.get()
    assert (ha_task["status"], ha_task["exitstatus"]) == ("stopped", "OK")
    assert resource(api, 120)["node"] == "pve2"  # accepted, not moved yet
    demo.advance(5)
    found = api.nodes("pve2").tasks.get(typefilter="qmigrate", vmid=120, source="all", since=ha_task["starttime"])
    assert len(found) == 1 and found[0]["user"] == "root@pam"
    assert resource(api, 120)["hastate"] == "migrate" and resource(api, 120)["lock"] == "migrate"
    demo.advance(30)
    moved = resource(api, 120)
    assert moved["node"] == "pve3" and moved["hastate"] == "started" and "lock" not in moved
    assert api.nodes("pve2").tasks(found[0]["upid"]).status.get()["exitstatus"] == "OK"
    service = next(e for e in api.cluster.ha.status.current.get() if e.get("sid") == "vm:120")
    assert service["node"] == "pve3"


@pytest.mark.parametrize("back_after", [600, 2], ids=["still offline at the end", "back before the end"])
def test_node_going_offline_mid_migration_fails_the_task(demo: RunningSimulator, back_after: int) -> None:
    # Back before the copy ended or not, the connection broke: the task fails either way.
    api = token_api(demo)
    now = demo.clock()
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    demo.inject_fault({"type": "node_offline", "node": "pve5", "at": now + 1, "until": now + back_after})
    demo.advance(30)
    status = api.nodes("pve1").tasks(upid).status.get()
    assert (status["status"], status["exitstatus"]) == ("stopped", "migration aborted")
    assert demo.placement()[100] == "pve1" and "lock" not in resource(api, 100)
    [task] = [t for t in demo.tasks() if t["upid"] == upid]
    assert task["endtime"] > now + 2  # the copy was still running when the node came back
    if back_after > 30:
        with pytest.raises(ResourceException) as caught:
            api.nodes("pve5").status.get()
        assert caught.value.status_code == 595
        demo.advance(back_after)
    assert api.nodes("pve5").status.get()["uptime"] < 60  # back, freshly booted


def test_migration_failure_fault_by_guest(demo: RunningSimulator) -> None:
    demo.inject_fault({"type": "migration_failure", "vmids": [101], "message": "migration problems"})
    api = token_api(demo)
    failing = api.nodes("pve1").qemu(101).migrate.post(target="pve5", online=1)
    fine = api.nodes("pve1").qemu(104).migrate.post(target="pve5", online=1)
    demo.advance(60)
    assert api.nodes("pve1").tasks(failing).status.get()["exitstatus"] == "migration problems"
    assert api.nodes("pve1").tasks(fine).status.get()["exitstatus"] == "OK"
    assert demo.placement()[101] == "pve1" and demo.placement()[104] == "pve5"


def test_migration_failure_fault_by_rate_is_seeded(demo: RunningSimulator) -> None:
    demo.inject_fault({"type": "migration_failure", "rate": 0.5})
    api = token_api(demo)
    upids = [api.nodes("pve4").qemu(vmid).migrate.post(target="pve5", online=1) for vmid in (146, 147, 149, 150, 151, 152, 154, 155)]
    demo.advance(120)
    results = [api.nodes("pve4").tasks(u).status.get()["exitstatus"] for u in upids]
    assert "OK" in results and "migration aborted" in results


def test_storage_missing_on_the_target_and_lost_quorum_are_refused() -> None:
    from tests.support.sim import running_simulator

    scenario = {
        "nodes": [{"name": n, "cores": 4, "memory": "16GiB"} for n in ("a", "b", "c")],
        "storages": [{"name": "fast", "type": "zfspool", "nodes": ["a", "b"]}],
        "guests": [{"vmid": 100, "node": "a", "storage": "fast"}],
    }
    with running_simulator(scenario, time_scale=0) as sim:
        api = token_api(sim)
        with pytest.raises(ResourceException) as caught:
            api.nodes("a").qemu(100).migrate.post(target="c", online=1)
        assert caught.value.content == "storage 'fast' is not available on node 'c'"
        check = api.nodes("a").qemu(100).migrate.get()
        assert check["allowed_nodes"] == ["b"] and check["not_allowed_nodes"] == {"c": {"unavailable_storages": ["fast"]}}
        sim.set_node_online("b", False)
        sim.set_node_online("c", False)
        with pytest.raises(ResourceException) as caught:
            api.nodes("a").qemu(100).migrate.post(target="b", online=1)
        assert caught.value.content == "cluster not ready - no quorum?"
        assert api.cluster.status.get()[0]["quorate"] == 0


def test_ha_migration_to_an_offline_node_fails_in_the_ha_task_chain(demo: RunningSimulator) -> None:
    api = token_api(demo)
    demo.set_node_online("pve5", False)
    upid = api.nodes("pve2").qemu(120).migrate.post(target="pve5", online=1)  # accepted: HA decides later
    demo.advance(10)
    assert api.nodes("pve2").tasks(upid).status.get()["exitstatus"] == "OK"
    failed = api.nodes("pve2").tasks.get(typefilter="qmigrate", vmid=120, source="all")
    assert failed[0]["status"] == "target node 'pve5' is not online"
    assert resource(api, 120)["node"] == "pve2"
