"""Every endpoint, through unmodified proxmoxer, with token and ticket auth: the shapes of pve-api.md."""

from __future__ import annotations

import re

from proxmoxer import ProxmoxAPI
from proxmoxer.tools import Tasks

from tests.support.sim import RunningSimulator

NODES = ["pve1", "pve2", "pve3", "pve4", "pve5"]


def test_version(api: ProxmoxAPI) -> None:
    assert api.version.get() == {"version": "9.0.10", "release": "9.0", "repoid": api.version.get()["repoid"]}
    assert re.fullmatch(r"[0-9a-f]{16}", api.version.get()["repoid"])


def test_cluster_status_lists_the_cluster_and_every_node(api: ProxmoxAPI) -> None:
    status = api.cluster.status.get()
    assert status[0] == {"type": "cluster", "id": "cluster", "name": "demo", "nodes": 5, "version": 8, "quorate": 1}
    nodes = [e for e in status if e["type"] == "node"]
    assert [n["name"] for n in nodes] == NODES
    assert nodes[0] == {"type": "node", "id": "node/pve1", "name": "pve1", "nodeid": 1, "ip": "10.0.0.11",
                        "local": 1, "online": 1, "level": ""}
    assert [n["local"] for n in nodes] == [1, 0, 0, 0, 0]


def test_cluster_resources_shapes(api: ProxmoxAPI) -> None:
    resources = api.cluster.resources.get()
    by_id = {r["id"]: r for r in resources}
    node = by_id["node/pve1"]
    assert set(node) >= {"id", "type", "node", "status", "uptime", "cpu", "mem", "disk", "maxcpu", "maxmem",
                         "maxdisk", "level", "cgroup-mode", "hastate"}
    assert node["status"] == "online" and node["maxcpu"] == 32 and node["maxmem"] == 128 * 1024**3
    assert 0 < node["cpu"] <= 1 and 0 < node["mem"] < node["maxmem"]
    web = by_id["qemu/100"]
    assert web["vmid"] == 100 and web["name"] == "web01" and web["status"] == "running" and web["template"] == 0
    assert web["tags"] == "plb_anti_affinity_web;prod;web"  # ;-joined, sorted
    assert web["pool"] == "prod" and web["disk"] == 0 and web["maxcpu"] == 8
    assert 0 < web["cpu"] <= 1 and web["mem"] <= web["maxmem"]
    assert web["memhost"] == web["mem"]  # PVE 9 adds memhost for qemu
    assert "lock" not in web and "hastate" not in web
    assert by_id["qemu/120"]["hastate"] == "started"
    assert by_id["qemu/140"]["lock"] == "backup"
    assert by_id["qemu/132"]["template"] == 1 and by_id["qemu/132"]["status"] == "stopped"
    stopped = by_id["qemu/132"]
    assert stopped["cpu"] == 0 and stopped["mem"] == 0 and stopped["uptime"] == 0
    ct = by_id["lxc/121"]
    assert ct["type"] == "lxc" and ct["disk"] > 0 and "memhost" not in ct
    storage = by_id["storage/pve1/local-lvm"]
    assert storage == {**storage, "type": "storage", "storage": "local-lvm", "node": "pve1", "plugintype": "lvmthin",
                       "status": "available", "shared": 0, "content": "images,rootdir"}
    assert by_id["storage/pve3/ceph"]["shared"] == 1
    assert by_id["/pool/prod"] == {"id": "/pool/prod", "type": "pool", "pool": "prod"}
    assert sum(r["type"] in ("qemu", "lxc") for r in resources) == 60


def test_cluster_resources_type_filter(api: ProxmoxAPI) -> None:
    assert {r["type"] for r in api.cluster.resources.get(type="vm")} == {"qemu", "lxc"}
    assert [r["node"] for r in api.cluster.resources.get(type="node")] == NODES
    assert {r["type"] for r in api.cluster.resources.get(type="storage")} == {"storage"}


def test_node_figures_are_the_sum_of_their_guests_plus_overhead(api: ProxmoxAPI) -> None:
    resources = api.cluster.resources.get()
    for node in (r for r in resources if r["type"] == "node"):
        guests = [r for r in resources if r["type"] in ("qemu", "lxc") and r["node"] == node["node"]]
        cores = sum(g["cpu"] * g["maxcpu"] for g in guests) + 0.5  # default host overhead: 0.5 cores, 2 GiB
        mem = sum(g["mem"] for g in guests) + 2 * 1024**3
        assert abs(node["cpu"] - min(1.0, cores / node["maxcpu"])) < 0.01
        assert abs(node["mem"] - mem) <= len(guests) + 1


def test_demo_is_visibly_imbalanced(api: ProxmoxAPI) -> None:
    cpu = {r["node"]: r["cpu"] for r in api.cluster.resources.get(type="node")}
    assert min(cpu["pve1"], cpu["pve2"]) > 0.5 and cpu["pve5"] < 0.1


def test_nodes_list(api: ProxmoxAPI) -> None:
    nodes = api.nodes.get()
    assert [n["node"] for n in nodes] == NODES
    assert set(nodes[0]) >= {"node", "status", "cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "uptime",
                             "level", "id", "type", "ssl_fingerprint"}


def test_node_status(api: ProxmoxAPI) -> None:
    status = api.nodes("pve1").status.get()
    assert all(isinstance(v, str) for v in status["loadavg"]) and len(status["loadavg"]) == 3
    assert float(status["loadavg"][0]) > 1
    assert status["cpuinfo"]["cpus"] == 32 and isinstance(status["cpuinfo"]["mhz"], str)
    memory = status["memory"]
    assert memory["total"] == memory["used"] + memory["free"] and memory["available"] == memory["free"]
    assert set(status["swap"]) == {"free", "total", "used"} and "shared" in status["ksm"]
    assert set(status["rootfs"]) == {"avail", "free", "total", "used"}
    assert status["pveversion"].startswith("pve-manager/9.0.10/") and 0 <= status["wait"] < 1
    assert status["kversion"].startswith("Linux ") and status["uptime"] > 0


def test_node_version_subscription_storage_replication(api: ProxmoxAPI) -> None:
    assert api.nodes("pve2").version.get()["version"] == "9.0.10"
    assert api.nodes("pve2").subscription.get()["status"] == "notfound"
    storages = {s["storage"]: s for s in api.nodes("pve2").storage.get()}
    assert set(storages) == {"local-lvm", "ceph", "ceph-ssd", "local"}  # ceph-ssd: pve1-pve3 only
    assert storages["ceph"]["shared"] == 1 and storages["ceph"]["total"] == 8 * 1024**4
    assert api.nodes("pve2").replication.get() == []
    assert {s["storage"] for s in api.storage.get()} == {"local-lvm", "ceph", "ceph-ssd", "local"}


def test_node_rrddata(api: ProxmoxAPI) -> None:
    rows = api.nodes("pve1").rrddata.get(timeframe="hour", cf="AVERAGE")
    assert len(rows) == 60 and rows[1]["time"] - rows[0]["time"] == 60
    assert set(rows[-1]) >= {"time", "loadavg", "maxcpu", "cpu", "iowait", "memtotal", "memused", "swaptotal",
                             "swapused", "roottotal", "rootused", "netin", "netout", "memavailable", "arcsize",
                             "pressurecpusome", "pressureiosome", "pressureiofull", "pressurememorysome",
                             "pressurememoryfull"}
    day = api.nodes("pve1").rrddata.get(timeframe="day", cf="MAX")
    assert len(day) == 70 and day[1]["time"] - day[0]["time"] == 1800
    assert len(api.nodes("pve1").rrddata.get(timeframe="week")) == 70


def test_guest_lists(api: ProxmoxAPI) -> None:
    vms = {g["vmid"]: g for g in api.nodes("pve1").qemu.get()}
    assert 100 in vms and 121 not in vms
    assert set(vms[100]) >= {"vmid", "name", "status", "cpus", "cpu", "mem", "maxmem", "disk", "maxdisk", "uptime",
                             "netin", "netout", "diskread", "diskwrite", "pid", "tags"}
    cts = api.nodes("pve2").lxc.get()
    assert 121 in {c["vmid"] for c in cts} and all(c["type"] == "lxc" for c in cts)


def test_guest_config_status_and_rrddata(api: ProxmoxAPI) -> None:
    config = api.nodes("pve1").qemu(100).config.get()
    assert config["name"] == "web01" and config["cores"] == 8 and config["memory"] == "16384"
    assert config["tags"] == "plb_anti_affinity_web;prod;web" and config["scsi0"].startswith("ceph:vm-100-disk-0")
    assert len(config["digest"]) == 40
    ct_config = api.nodes("pve2").lxc(121).config.get()
    assert ct_config["hostname"] == "ha-ct01" and ct_config["memory"] == 2048 and "rootfs" in ct_config
    status = api.nodes("pve1").qemu(100).status.current.get()
    assert status["status"] == "running" and status["qmpstatus"] == "running" and status["ha"] == {"managed": 0}
    assert api.nodes("pve2").qemu(120).status.current.get()["ha"] == {"managed": 1, "state": "started"}
    ct = api.nodes("pve2").lxc(121).status.current.get()
    assert ct["type"] == "lxc" and ct["ha"]["managed"] == 1
    rows = api.nodes("pve1").qemu(100).rrddata.get(timeframe="hour", cf="AVERAGE")
    assert len(rows) == 60 and set(rows[-1]) >= {"cpu", "maxcpu", "mem", "maxmem", "disk", "maxdisk", "netin",
                                                  "netout", "diskread", "diskwrite", "pressurecpusome"}
    assert len(api.nodes("pve2").lxc(121).rrddata.get(timeframe="hour")) == 60
    assert api.nodes("pve1").qemu(100).pending.get()


def test_migrate_precondition(api: ProxmoxAPI) -> None:
    check = api.nodes("pve3").qemu(130).migrate.get()
    assert check["running"] == 1 and check["allowed_nodes"] == ["pve1", "pve2", "pve4", "pve5"]
    assert check["not_allowed_nodes"] == {} and check["local_resources"] == []
    assert check["local_disks"] == [{"volid": "local-lvm:vm-130-disk-0", "size": 200 * 1024**3,
                                     "drivename": "scsi0", "shared": 0, "cdrom": 0, "is_unused": 0}]
    assert api.nodes("pve1").qemu(100).migrate.get(target="pve2")["local_disks"] == []
    ct_check = api.nodes("pve2").lxc(121).migrate.get()  # PVE 9 only, hyphenated keys
    assert "allowed-nodes" in ct_check and "not-allowed-nodes" in ct_check


def test_pools(api: ProxmoxAPI) -> None:
    assert {p["poolid"] for p in api.pools.get()} == {"prod", "dev", "infra"}
    prod = api.pools("prod").get()
    assert prod["comment"] == "Production"
    members = {m["vmid"] for m in prod["members"]}
    assert {100, 101, 120, 121} <= members and all(m["id"].startswith(("qemu/", "lxc/")) for m in prod["members"])
    assert api.pools.get(poolid="infra")[0]["poolid"] == "infra"


def test_access_permissions(api: ProxmoxAPI) -> None:
    permissions = api.access.permissions.get()
    assert permissions["/"]["VM.Migrate"] == 1 and permissions["/"]["Sys.Audit"] == 1


def test_ha_endpoints(api: ProxmoxAPI) -> None:
    resources = {r["sid"]: r for r in api.cluster.ha.resources.get()}
    assert set(resources) == {"vm:120", "ct:121", "vm:122"}
    assert resources["vm:120"]["state"] == "started" and resources["ct:121"]["type"] == "ct"
    assert api.cluster.ha.resources("vm:120").get()["sid"] == "vm:120"
    current = api.cluster.ha.status.current.get()
    kinds = {e["type"] for e in current}
    assert kinds == {"quorum", "master", "lrm", "service"}
    service = next(e for e in current if e.get("sid") == "vm:120")
    assert service["node"] == "pve2" and service["state"] == "started"
    manager = api.cluster.ha.status.manager_status.get()
    assert manager["manager_status"]["master_node"] == "pve1"
    assert manager["manager_status"]["service_status"]["vm:120"]["node"] == "pve2"
    rules = {r["rule"]: r for r in api.cluster.ha.rules.get()}
    assert rules["ha-apart"]["resources"] == "vm:120,vm:122" and rules["ha-apart"]["affinity"] == "negative"
    assert rules["ha-core-nodes"]["type"] == "node-affinity" and rules["ha-core-nodes"]["nodes"] == "pve1,pve2,pve3"


def test_cluster_extras_peers_call(api: ProxmoxAPI) -> None:
    assert api.cluster.options.get()["crs"] == {"ha": "static"}
    assert api.cluster.config.qdevice.get() == {}
    not_backed = api.cluster("backup-info/not-backed-up").get()
    assert {"type": "qemu", "vmid": 100, "name": "web01"} in not_backed


def test_tasks_list_and_log(frozen_demo: RunningSimulator, api: ProxmoxAPI) -> None:
    upid = api.nodes("pve5").qemu(157).migrate.post(target="pve4")  # a stopped VM: offline migration
    assert Tasks.decode_upid(upid)["type"] == "qmigrate"
    active = api.nodes("pve5").tasks.get(source="active")
    assert upid in {t["upid"] for t in active}
    assert upid not in {t["upid"] for t in api.nodes("pve5").tasks.get()}  # default source: archive
    frozen_demo.advance(60)
    finished = api.nodes("pve5").tasks.get(typefilter="qmigrate", vmid=157, source="all")
    assert finished[0]["upid"] == upid and finished[0]["status"] == "OK" and finished[0]["endtime"] >= finished[0]["starttime"]
    log = api.nodes("pve5").tasks(upid).log.get()
    assert log[-1] == {"n": len(log), "t": "TASK OK"}
    # put it back so the shared simulator keeps the demo placement
    back = api.nodes("pve4").qemu(157).migrate.post(target="pve5")
    frozen_demo.advance(60)
    assert api.nodes("pve4").tasks(back).status.get()["exitstatus"] == "OK"


def test_ha_maintenance_node_and_pve8_groups() -> None:
    from tests.sim.conftest import token_api
    from tests.support.sim import running_simulator

    scenario = {
        "nodes": [{"name": "a", "cores": 4, "memory": "16GiB", "version": "8.4.14", "maintenance": True},
                  {"name": "b", "cores": 4, "memory": "16GiB", "version": "8.4.14"}],
        "guests": [{"vmid": 100, "node": "a", "ha": {"state": "started", "group": "g1"}}],
        "ha": {"groups": [{"group": "g1", "nodes": "a:2,b"}]},
    }
    with running_simulator(scenario, time_scale=0) as sim:
        api = token_api(sim)
        nodes = {r["node"]: r for r in api.cluster.resources.get(type="node")}
        assert nodes["a"]["hastate"] == "maintenance" and nodes["b"]["hastate"] == "online"
        lrm = next(e for e in api.cluster.ha.status.current.get() if e["id"] == "lrm:a")
        assert "maintenance mode" in lrm["status"]  # what ProxLB looks for
        assert api.cluster.ha.status.manager_status.get()["manager_status"]["node_status"]["a"] == "maintenance"
        assert api.cluster.ha.resources.get()[0]["group"] == "g1"
        assert api.cluster.ha.groups.get()[0]["nodes"] == "a:2,b"


def test_node_time_is_the_clock_upids_are_stamped_with(frozen_demo: RunningSimulator, api: ProxmoxAPI) -> None:
    answer = api.nodes("pve1").time.get()
    assert answer == {"timezone": "UTC", "time": int(frozen_demo.clock()), "localtime": int(frozen_demo.clock())}


def test_cluster_tasks_lists_each_node_s_recent_tasks(demo: RunningSimulator) -> None:
    from tests.sim.conftest import MONITOR_TOKEN, token_api

    api = token_api(demo)
    upid = api.nodes("pve1").qemu(100).migrate.post(target="pve5", online=1)
    demo.advance(300)
    tasks = api.cluster.tasks.get()
    mine = next(t for t in tasks if t["upid"] == upid)
    assert (mine["node"], mine["type"], mine["id"], mine["status"]) == ("pve1", "qmigrate", "100", "OK")
    assert (mine["user"], mine["tokenid"]) == ("root@pam", "test") and mine["endtime"] >= mine["starttime"]
    monitor = token_api(demo, user=MONITOR_TOKEN[0], token_name=MONITOR_TOKEN[1], token_value=MONITOR_TOKEN[2])
    assert any(t["upid"] == upid for t in monitor.cluster.tasks.get())  # Sys.Audit on /: everyone's
