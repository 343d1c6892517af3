"""Per-node endpoints: status, rrddata, guests, migration, tasks (proxying as the schema says: apischema.py)."""

from __future__ import annotations

from typing import Any

from .cluster import GuestState
from .cpuflags import model_flags
from .failure import PveFailure, param_error, unreachable
from .figures import guest_figures, guest_pressure, load_averages, node_figures
from .resources import node_entry, pve_bool, storage_entries
from .routing import Call, route
from .rrd import guest_rrd, node_rrd
from .tasks import parse_upid
from .views_cluster import digest, repoid, version_info

_KERNELS = {8: "6.8.12-15-pve", 9: "6.14.11-2-pve"}
_QEMU = {8: "9.2.0", 9: "10.0.2"}


@route("GET", "/nodes")
def nodes(call: Call) -> Any:
    cluster = call.api.cluster
    ha_used = any(g.spec.ha for g in cluster.guests.values())
    answer = []
    for name, node in cluster.nodes.items():
        if not call.caller.can(f"/nodes/{name}", "Sys.Audit"):
            continue
        entry = node_entry(cluster, node, call.now, ha_used)
        entry.pop("hastate", None)
        entry.pop("cgroup-mode", None)
        entry["ssl_fingerprint"] = ":".join(digest(name)[i:i + 2].upper() for i in range(0, 40, 2))
        answer.append(entry)
    return answer


@route("GET", "/nodes/{node}/status")
def node_status(call: Call, node: str) -> Any:
    cluster = call.api.cluster
    state = cluster.node(node)
    spec = state.spec
    figures = node_figures(cluster, state, call.now)
    if figures is None:  # not reached: proxied calls to an offline node answer 595 first
        raise unreachable()
    major = spec.major
    memory: dict[str, int] = {"free": spec.memory - figures.mem, "total": spec.memory, "used": figures.mem}
    if major >= 9:
        memory["available"] = spec.memory - figures.mem
    rootfs_used = spec.rootfs // 4
    return {
        "cpu": figures.cpu, "wait": figures.wait, "idle": 0,
        "cpuinfo": {"cores": max(1, spec.cores // 2), "cpus": spec.cores, "sockets": 1, "mhz": "2999.998",
                    "model": spec.model, "hvm": "1", "user_hz": 100, "flags": model_flags(spec.model, spec.cpu_flags)},
        "loadavg": list(load_averages(cluster, state, call.now)),
        "memory": memory,
        "swap": {"free": spec.swap - figures.swap_used, "total": spec.swap, "used": figures.swap_used},
        "ksm": {"shared": figures.ksm_shared},
        "rootfs": {"avail": spec.rootfs - rootfs_used, "free": spec.rootfs - rootfs_used, "total": spec.rootfs,
                   "used": rootfs_used},
        "pveversion": f"pve-manager/{spec.version}/{repoid(spec.version)}",
        "kversion": f"Linux {_KERNELS.get(major, _KERNELS[9])} #1 SMP PREEMPT_DYNAMIC PMX x86_64",
        "uptime": int(max(0.0, call.now - state.boot)),
        "boot-info": {"mode": "efi", "secureboot": 0},
        "current-kernel": {"machine": "x86_64", "release": _KERNELS.get(major, _KERNELS[9]), "sysname": "Linux",
                           "version": "#1 SMP PREEMPT_DYNAMIC PMX"},
    }


@route("GET", "/nodes/{node}/version")
def node_version(call: Call, node: str) -> Any:
    return version_info(call.api.cluster.node(node).spec.version)


@route("GET", "/nodes/{node}/time")
def node_time(call: Call, node: str) -> Any:
    call.api.cluster.node(node)
    now = int(call.now)
    return {"timezone": "UTC", "time": now, "localtime": now}  # simulated nodes run on UTC


@route("GET", "/nodes/{node}/subscription")
def subscription(call: Call, node: str) -> Any:
    return {"status": "notfound", "message": "There is no subscription key",
            "url": "https://www.proxmox.com/en/proxmox-virtual-environment/pricing"}


@route("GET", "/nodes/{node}/storage")
def node_storage(call: Call, node: str) -> Any:
    answer = []
    for entry in storage_entries(call.api.cluster):
        if entry["node"] != node or not call.caller.can(f"/storage/{entry['storage']}", "Datastore.Audit"):
            continue
        total, used = entry["maxdisk"], entry["disk"]
        answer.append({"storage": entry["storage"], "type": entry["plugintype"], "content": entry["content"],
                       "active": 1, "enabled": 1, "shared": entry["shared"], "total": total, "used": used,
                       "avail": total - used, "used_fraction": round(used / total, 6) if total else 0})
    return answer


@route("GET", "/nodes/{node}/rrddata")
def node_rrddata(call: Call, node: str) -> Any:
    return node_rrd(call.api.cluster, call.api.cluster.node(node), call.now, call.params)


@route("GET", "/nodes/{node}/{kind}")
def guest_list(call: Call, node: str, kind: str) -> Any:
    cluster = call.api.cluster
    cluster.node(node)
    return [_list_entry(call, g) for g in cluster.guests_on(node)
            if g.spec.type == kind and call.caller.can(f"/vms/{g.spec.vmid}", "VM.Audit")]


def _list_entry(call: Call, guest: GuestState) -> dict[str, Any]:
    figures = guest_figures(call.api.cluster, guest, call.now)
    entry = _guest_fields(call, guest, figures)
    if figures.running:
        entry["pid"] = 10000 + guest.spec.vmid
    return _guest_marks(guest, entry)


def _guest_fields(call: Call, guest: GuestState, figures: Any) -> dict[str, Any]:
    """The fields guest lists and status/current share (PVE 9 adds the guest's PSI while it runs)."""
    spec = guest.spec
    fields: dict[str, Any] = {
        "vmid": spec.vmid, "name": spec.name, "status": guest.status, "cpus": spec.cpus, "cpu": figures.cpu,
        "mem": figures.mem, "maxmem": spec.memory, "disk": int(spec.disk * 0.4) if spec.type == "lxc" else 0,
        "maxdisk": spec.disk, "uptime": figures.uptime, **figures.io,
    }
    if spec.type == "lxc":
        fields.update({"type": "lxc", "swap": 0, "maxswap": 512 * 1024**2})
    if figures.running and call.api.cluster.node_major(guest.node) >= 9:
        fields.update(guest_pressure(call.api.cluster, guest, figures, call.now))
    return fields


def _guest_marks(guest: GuestState, entry: dict[str, Any]) -> dict[str, Any]:
    """Tags, template and lock: present only when set, as PVE sends them."""
    if guest.spec.tags:
        entry["tags"] = ";".join(guest.spec.tags)
    if guest.spec.template:
        entry["template"] = 1
    if guest.lock:
        entry["lock"] = guest.lock
    return entry


def _guest(call: Call, node: str, kind: str, vmid: str) -> GuestState:
    call.api.cluster.node(node)
    guest = call.api.cluster.guest_on(node, kind, int(vmid))
    return guest


@route("GET", "/nodes/{node}/{kind}/{vmid}/config")
def guest_config(call: Call, node: str, kind: str, vmid: str) -> Any:
    guest = _guest(call, node, kind, vmid)
    spec = guest.spec
    size = f"{max(1, spec.disk // 1024**3)}G"
    if kind == "qemu":
        config: dict[str, Any] = {
            "name": spec.name, "cores": spec.cpus, "sockets": 1, "memory": str(spec.memory // 1024**2),
            "scsi0": f"{spec.volid},iothread=1,size={size}", "scsihw": "virtio-scsi-single", "ostype": "l26",
            "boot": "order=scsi0;net0", "net0": f"virtio=BC:24:11:{spec.vmid % 256:02X}:00:01,bridge=vmbr0",
            "onboot": 1, "agent": "1", "vmgenid": digest(spec.vmid)[:8] + "-0000-4000-8000-000000000000",
        }
        if spec.cputype is not None:
            config["cpu"] = spec.cputype
    else:
        config = {
            "hostname": spec.name, "cores": spec.cpus, "memory": spec.memory // 1024**2, "swap": 512,
            "rootfs": f"{spec.volid},size={size}", "arch": "amd64", "ostype": "debian", "onboot": 1,
            "net0": f"name=eth0,bridge=vmbr0,hwaddr=BC:24:11:{spec.vmid % 256:02X}:00:02,ip=dhcp,type=veth",
        }
    _guest_marks(guest, config)
    config["digest"] = digest(config)
    return config


@route("GET", "/nodes/{node}/{kind}/{vmid}/pending")
def guest_pending(call: Call, node: str, kind: str, vmid: str) -> Any:
    return [{"key": k, "value": v} for k, v in guest_config(call, node, kind, vmid).items() if k != "digest"]


@route("GET", "/nodes/{node}/{kind}/{vmid}/status/current")
def guest_status(call: Call, node: str, kind: str, vmid: str) -> Any:
    guest = _guest(call, node, kind, vmid)
    spec = guest.spec
    figures = guest_figures(call.api.cluster, guest, call.now)
    ha: dict[str, Any] = {"managed": 0}
    if spec.ha is not None:
        ha = {"managed": 1, "state": guest.hastate or spec.ha.state}
        if spec.ha.group:
            ha["group"] = spec.ha.group
    status = {**_guest_fields(call, guest, figures), "ha": ha}
    major = call.api.cluster.node_major(node)
    if kind == "qemu":
        status.update({"qmpstatus": guest.status, "agent": 1})
        if figures.running:
            status.update({"running-qemu": _QEMU.get(major, _QEMU[9]), "running-machine": "pc-i440fx-9.2+pve1",
                           "balloon": spec.memory, "pid": 10000 + spec.vmid})
        if major >= 9:
            status["memhost"] = figures.mem
    return _guest_marks(guest, status)


@route("GET", "/nodes/{node}/{kind}/{vmid}/rrddata")
def guest_rrddata(call: Call, node: str, kind: str, vmid: str) -> Any:
    guest = _guest(call, node, kind, vmid)
    return guest_rrd(call.api.cluster, guest, call.now, call.params)


@route("GET", "/nodes/{node}/{kind}/{vmid}/migrate")
def migrate_precondition(call: Call, node: str, kind: str, vmid: str) -> Any:
    cluster = call.api.cluster
    guest = _guest(call, node, kind, vmid)
    spec = guest.spec
    target = call.params.get("target")
    if target is not None:
        cluster.node(target)
        if target == node:
            raise param_error({"target": "target is local node."})
    storage = cluster.scenario.storage(spec.storage)
    allowed, not_allowed = [], {}
    for name, state in cluster.nodes.items():
        if name == node or not state.online:
            continue
        if storage.on(name):
            allowed.append(name)
        else:
            not_allowed[name] = {"unavailable_storages": [storage.name]}
    running = pve_bool(guest.status != "stopped")
    if kind == "lxc":
        return {"running": running, "allowed-nodes": allowed, "not-allowed-nodes": not_allowed}
    local = [{"volid": spec.volid, "size": spec.disk, "drivename": "scsi0", "shared": 0, "cdrom": 0, "is_unused": 0}
             ] if spec.local_disks else []
    return {"running": running, "allowed_nodes": allowed, "not_allowed_nodes": not_allowed, "local_disks": local,
            "local_resources": [], "mapped-resources": [], "mapped-resource-info": {}, "has-dbus-vmstate": 0}


@route("POST", "/nodes/{node}/{kind}/{vmid}/migrate")
def migrate(call: Call, node: str, kind: str, vmid: str) -> Any:
    return call.api.cluster.migrate(node, kind, int(vmid), call.params, call.caller.userid)


@route("GET", "/nodes/{node}/tasks")
def task_list(call: Call, node: str) -> Any:
    cluster = call.api.cluster
    cluster.node(node)
    p = call.params
    source = p.get("source", "archive")
    tasks = [t for t in cluster.tasks.values() if t.node == node]
    if source == "archive":
        tasks = [t for t in tasks if t.status == "stopped"]
    elif source == "active":
        tasks = [t for t in tasks if t.status == "running"]
    if p.get("typefilter"):
        tasks = [t for t in tasks if t.type == p["typefilter"]]
    if p.get("vmid"):
        tasks = [t for t in tasks if t.id == p["vmid"]]
    if p.get("userfilter"):
        tasks = [t for t in tasks if p["userfilter"] in t.user]
    if p.get("since"):
        tasks = [t for t in tasks if t.starttime >= int(p["since"])]
    if p.get("until"):
        tasks = [t for t in tasks if t.starttime <= int(p["until"])]
    if p.get("errors") == "1":
        tasks = [t for t in tasks if t.exitstatus not in (None, "OK")]
    tasks.sort(key=lambda t: (t.starttime, t.pid), reverse=True)
    start, limit = int(p.get("start", 0)), int(p.get("limit", 50))
    return [t.list_entry() for t in tasks[start:start + limit]]


def _task(call: Call, upid: str) -> Any:
    if parse_upid(upid) is None:
        raise param_error({"upid": "unable to parse worker upid"})
    task = call.api.cluster.tasks.get(upid)
    if task is None:
        raise PveFailure(500, f"unable to open file - no such task '{upid}'")
    return task


@route("GET", "/nodes/{node}/tasks/{upid}/status")
def task_status(call: Call, node: str, upid: str) -> Any:
    return _task(call, upid).status_entry()


@route("GET", "/nodes/{node}/tasks/{upid}/log")
def task_log(call: Call, node: str, upid: str) -> Any:
    lines = _task(call, upid).log
    start, limit = int(call.params.get("start", 0)), int(call.params.get("limit", 50))
    return [{"n": i + 1, "t": line} for i, line in enumerate(lines)][start:start + limit]
