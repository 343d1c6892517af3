"""Scenarios: the simulated cluster as a user describes it (YAML, a dict, or a capture).

Everything is validated here, once, into frozen specs; a problem is one `ConfigError` line
naming the item and the fix. The running state lives in `cluster.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pveapi.errors import ConfigError
from pveapi.inventory import ha_sid
from pveapi.tags import parse_tags
from pveapi.values import choice, count, flag, found, mapping, number, reject_unknown, size_bytes
from pveapi.values import vmid as read_vmid

from .access import BUILTIN_ROLES, PRIVILEGES, AclEntry, normalize_path
from .cpuflags import DEFAULT_MODEL
from .generate import expand_generated
from .replication import QDevice, ReplicationJob, parse_qdevice, parse_replication
from .validation import MAX_SECONDS, MAX_SEED, MAX_TIME_SCALE, listed, parse_start, required, unique

BUILTIN_DIR = Path(__file__).parent / "scenarios"
GUEST_TYPES = ("qemu", "lxc")
GUEST_STATUSES = ("running", "stopped", "paused")
PROFILE_KINDS = {
    "constant": {"level": 0.1, "noise": 0.02},
    "diurnal": {"mean": 0.3, "amplitude": 0.2, "peak_hour": 14.0, "noise": 0.02},
    "bursty": {"base": 0.1, "peak": 0.9, "chance": 0.1, "noise": 0.02, "group": 0},
    "trending": {"start": 0.2, "per_day": 0.05, "noise": 0.02},
    "idle": {"noise": 0.01},
}
# libyaml's loader when PyYAML has it (the pure-Python one takes a third of a second on `demo`).
MAX_CORES = 8192
# Profile parameters are loads (fractions of the guest's allocation) unless listed here.
_PROFILE_RANGES = {"peak_hour": (0, 24), "per_day": (-1, 1), "group": (0, 1_000_000)}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
ALL_PRIVILEGES = tuple(sorted(PRIVILEGES))  # what a full-access token holds (the Administrator role)
_USERID = re.compile(r"^[^\s:/@]+@[A-Za-z][A-Za-z0-9.\-_]+$")
_TOKEN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]+$")
_NAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?$")


@dataclass(frozen=True)
class Profile:
    kind: str
    params: Mapping[str, float]


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cores: int
    memory: int
    version: str = "8.4.14"
    online: bool = True
    maintenance: bool = False
    overhead_cpu: float = 0.5  # cores the host itself uses
    overhead_mem: int = 2 * 1024**3
    swap: int = 8 * 1024**3
    rootfs: int = 100 * 1024**3
    model: str = DEFAULT_MODEL
    cpu_flags: str | None = None  # node status `cpuinfo.flags`; None: those of `model` (simulator/cpuflags.py)
    ip: str = ""

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class HaSpec:
    state: str = "started"
    group: str | None = None
    max_restart: int = 1
    max_relocate: int = 1


@dataclass(frozen=True)
class GuestSpec:
    vmid: int
    type: str
    name: str
    node: str
    cpus: int
    memory: int
    disk: int
    storage: str
    local_disks: bool = False
    status: str = "running"
    template: bool = False
    tags: tuple[str, ...] = ()
    pool: str | None = None
    lock: str | None = None
    ha: HaSpec | None = None
    cpu: Profile = Profile("constant", {"level": 0.1, "noise": 0.02})
    cputype: str | None = None  # the qemu config's `cpu` (e.g. host); None: PVE's default, left out
    mem: Profile = Profile("constant", {"level": 0.5, "noise": 0.02})
    uptime: int = 86400  # seconds already up when the simulation starts

    @property
    def sid(self) -> str:
        return ha_sid(self.type, self.vmid)

    @property
    def volid(self) -> str:
        return f"{self.storage}:{'vm' if self.type == 'qemu' else 'subvol'}-{self.vmid}-disk-0"


@dataclass(frozen=True)
class StorageSpec:
    name: str
    type: str = "lvmthin"
    shared: bool = False
    content: str = "images,rootdir"
    size: int = 500 * 1024**3
    nodes: tuple[str, ...] | None = None  # None: every node

    def on(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes


@dataclass(frozen=True)
class Credential:
    """A token (`name` set) or a user (password optional), with privileges granted to it directly.

    `acl` (path -> privileges) is the scenario shorthand; the roles-and-ACL form is `Scenario.acl`.
    """

    user: str
    secret: str | None
    acl: Mapping[str, tuple[str, ...]]
    name: str | None = None
    privsep: bool = True

    @property
    def tokenid(self) -> str:
        return f"{self.user}!{self.name}" if self.name else self.user


@dataclass(frozen=True)
class Migration:
    bandwidth: int = 1024**3  # bytes per virtual second
    overhead_s: float = 4.0
    ha_delay_s: float = 5.0


@dataclass(frozen=True)
class Scenario:
    name: str
    cluster_name: str
    nodes: tuple[NodeSpec, ...]
    guests: tuple[GuestSpec, ...]
    storages: tuple[StorageSpec, ...] = ()
    pools: Mapping[str, str] = field(default_factory=dict)  # id -> comment
    credentials: tuple[Credential, ...] = ()
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    acl: tuple[AclEntry, ...] = ()
    ha_groups: tuple[Mapping[str, Any], ...] = ()
    ha_rules: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    migration: Migration = Migration()
    seed: int = 1
    time_scale: float = 1.0
    start: float | None = None
    replication: tuple[ReplicationJob, ...] = ()
    qdevice: QDevice | None = None

    def storage(self, name: str) -> StorageSpec:
        """A guest's storage; the scenario loader has checked it exists."""
        return next(s for s in self.storages if s.name == name)



def load_scenario(source: str | Path | Mapping[str, Any] | list[Any]) -> Scenario:
    """A built-in name, a YAML/JSON file path, a scenario dict, or a capture list."""
    if isinstance(source, (Mapping, list)):
        return _from_data(source, "scenario")
    text_source = str(source)
    path = Path(text_source)
    if not path.exists() and (BUILTIN_DIR / f"{text_source}.yaml").is_file():
        path = BUILTIN_DIR / f"{text_source}.yaml"
    if not path.is_file():
        builtin = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))
        raise ConfigError(f"scenario {text_source}: no such file or built-in scenario (built-in: {builtin})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"scenario {path}: cannot read it: {exc}") from None
    where = f"scenario {path.name}"
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=_YAML_LOADER)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply; expected a scenario mapping or a capture list") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{where}: invalid YAML{at}: {problem}") from None
    return _from_data(data, where, default_name=path.stem)


def _from_data(data: Any, where: str, default_name: str = "scenario") -> Scenario:
    """Build and validate; every problem names the scenario it is in."""
    try:
        return _build(data, where, default_name)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply; expected a scenario mapping or a capture list") from None
    except ConfigError as exc:
        if str(exc).startswith(where):
            raise
        raise ConfigError(f"{where}: {exc}") from None


def _build(data: Any, where: str, default_name: str) -> Scenario:
    if isinstance(data, Mapping) and "data" in data:  # a capture as the API wraps it: {"data": [...]}
        if not isinstance(data["data"], list):
            raise ConfigError(f"{where}: `data` is {found(data['data'])}, not a list; a capture is the list "
                              "GET /cluster/resources answers (its `data`), or a scenario mapping with nodes and guests")
        data = data["data"]
    if isinstance(data, list):
        from .capture import scenario_from_capture  # the capture format builds on this module

        return scenario_from_capture(data, where, default_name)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with nodes and guests (or a /cluster/resources capture list)")
    known = {"name", "cluster", "seed", "time_scale", "start", "migration", "options", "users", "tokens",
             "roles", "acl", "nodes", "storages", "pools", "guests", "ha", "generate", "replication", "qdevice"}
    reject_unknown(data, known, where)
    data = expand_generated(data, where)
    cluster = mapping(data.get("cluster") or {}, f"{where}.cluster")
    nodes = tuple(_node(n, f"{where}.nodes[{i}]") for i, n in enumerate(listed(data.get("nodes") or [], f"{where}.nodes")))
    if not nodes:
        raise ConfigError(f"{where}: needs at least one node under `nodes`")
    unique([n.name for n in nodes], where, "node name")
    storages = tuple(
        _storage(s, f"{where}.storages[{i}]", {n.name for n in nodes})
        for i, s in enumerate(listed(data.get("storages") or [], f"{where}.storages"))
    ) or (StorageSpec("local-lvm"),)
    unique([s.name for s in storages], where, "storage name")
    pools = dict(_pool(p, f"{where}.pools[{i}]") for i, p in enumerate(listed(data.get("pools") or [], f"{where}.pools")))
    guests = tuple(
        _guest(g, f"{where}.guests[{i}]", nodes, storages, pools)
        for i, g in enumerate(listed(data.get("guests") or [], f"{where}.guests"))
    )
    seen: set[int] = set()
    for guest in guests:
        if guest.vmid in seen:
            raise ConfigError(f"{where}: duplicate vmid {guest.vmid}; every guest needs its own vmid")
        seen.add(guest.vmid)
    ha = mapping(data.get("ha") or {}, f"{where}.ha")
    return Scenario(
        name=str(data.get("name") or default_name),
        cluster_name=str(cluster.get("name") or data.get("name") or default_name),
        nodes=nodes,
        guests=guests,
        storages=storages,
        pools=pools,
        credentials=(credentials := _credentials(data, where)),
        roles=(roles := _roles(data.get("roles"), f"{where}.roles")),
        acl=_acl_entries(data.get("acl"), f"{where}.acl", roles, credentials),
        ha_groups=tuple(_ha_group(g, f"{where}.ha.groups[{i}]") for i, g in enumerate(listed(ha.get("groups") or [], f"{where}.ha.groups"))),
        ha_rules=tuple(_ha_rule(r, f"{where}.ha.rules[{i}]", guests, nodes)
                       for i, r in enumerate(listed(ha.get("rules") or [], f"{where}.ha.rules"))),
        options=mapping(data.get("options") or {}, f"{where}.options"),
        migration=_migration(data.get("migration") or {}, f"{where}.migration"),
        seed=count(data.get("seed", 1), f"{where}.seed", 0, MAX_SEED),
        time_scale=number(data.get("time_scale", 1), f"{where}.time_scale", 0, MAX_TIME_SCALE),
        start=parse_start(data.get("start"), f"{where}.start"),
        replication=parse_replication(data.get("replication"), f"{where}.replication",
                                      {g.vmid: g.node for g in guests}, {n.name for n in nodes}),
        qdevice=parse_qdevice(data.get("qdevice"), f"{where}.qdevice"),
    )


def _node(data: Any, where: str) -> NodeSpec:
    d = mapping(data, where)
    name = str(d.get("name") or "")
    if not _NAME.match(name):
        raise ConfigError(f"{where}.name: {name!r} is not a valid node name (letters, digits, '-')")
    where = f"node {name}"
    overhead = mapping(d.get("overhead") or {}, f"{where}.overhead")
    version = str(d.get("version", "8.4.14"))
    if not re.match(r"^\d+\.\d+\.\d+$", version):
        raise ConfigError(f"{where}.version: expected a PVE version like 8.4.14 or 9.0.10, got {version!r}")
    return NodeSpec(
        name=name,
        cores=count(d.get("cores"), f"{where}.cores", 1, MAX_CORES),
        memory=size_bytes(required(d, "memory", where), f"{where}.memory"),
        version=version,
        online=flag(d.get("online", True), f"{where}.online"),
        maintenance=flag(d.get("maintenance", False), f"{where}.maintenance"),
        overhead_cpu=number(overhead.get("cpu", 0.5), f"{where}.overhead.cpu", 0, MAX_CORES),
        overhead_mem=size_bytes(overhead.get("memory", "2GiB"), f"{where}.overhead.memory"),
        swap=size_bytes(d.get("swap", "8GiB"), f"{where}.swap"),
        rootfs=size_bytes(d.get("rootfs", "100GiB"), f"{where}.rootfs"),
        model=str(d.get("model", NodeSpec.model)),
        cpu_flags=_cpu_flags(d.get("cpu_flags"), f"{where}.cpu_flags"),
        ip=str(d.get("ip", "")),
    )


def _storage(data: Any, where: str, node_names: set[str]) -> StorageSpec:
    d = mapping(data, where)
    name = str(required(d, "name", where))
    nodes = d.get("nodes")
    if nodes is not None:
        nodes = tuple(str(n) for n in listed(nodes, f"storage {name}.nodes"))
        for n in nodes:
            if n not in node_names:
                raise ConfigError(f"storage {name}: unknown node {n!r}; known nodes: {', '.join(sorted(node_names))}")
    return StorageSpec(
        name=name,
        type=str(d.get("type", "lvmthin")),
        shared=flag(d.get("shared", False), f"storage {name}.shared"),
        content=str(d.get("content", "images,rootdir")),
        size=size_bytes(d.get("size", "500GiB"), f"storage {name}.size"),
        nodes=nodes,
    )


def _pool(data: Any, where: str) -> tuple[str, str]:
    d = mapping(data, where)
    return str(required(d, "id", where)), str(d.get("comment", ""))


def _ha_group(data: Any, where: str) -> Mapping[str, Any]:
    d = mapping(data, where)
    required(d, "group", where)
    return d


def _guest(data: Any, where: str, nodes: tuple[NodeSpec, ...], storages: tuple[StorageSpec, ...],
           pools: Mapping[str, str]) -> GuestSpec:
    d = mapping(data, where)
    vmid = read_vmid(required(d, "vmid", where), f"{where}.vmid")
    where = f"guest {vmid}"
    kind = choice(d.get("type", "qemu"), f"{where}.type", GUEST_TYPES)
    node = str(required(d, "node", where))
    by_name = {n.name: n for n in nodes}
    if node not in by_name:
        raise ConfigError(f"{where} is on unknown node {node!r}; known nodes: {', '.join(sorted(by_name))}")
    memory = size_bytes(d.get("memory", "2GiB"), f"{where}.memory")
    largest = max(nodes, key=lambda n: n.memory)
    if memory > largest.memory:
        raise ConfigError(
            f"{where} needs {memory / 1024**3:.0f} GiB of memory but the largest node ({largest.name}) has "
            f"{largest.memory / 1024**3:.0f} GiB; shrink the guest or add a bigger node"
        )
    cpus = count(d.get("cpus", 1), f"{where}.cpus", 1, MAX_CORES)
    if cpus > max(n.cores for n in nodes):
        raise ConfigError(f"{where} has {cpus} vCPUs but the largest node has {max(n.cores for n in nodes)} cores")
    status = choice(d.get("status", "running"), f"{where}.status", GUEST_STATUSES)
    local = flag(d.get("local_disks", False), f"{where}.local_disks")
    storage = _guest_storage(d, where, storages, local, node)
    pool = d.get("pool")
    if pool is not None and str(pool) not in pools:
        raise ConfigError(f"{where}.pool: unknown pool {pool!r}; declare it under `pools`")
    tags = d.get("tags") or []
    tag_set = parse_tags(tags if isinstance(tags, str) else ";".join(map(str, listed(tags, f"{where}.tags"))))
    ha = d.get("ha")
    ha_spec = None
    if ha:
        ha_map = {} if ha is True else mapping(ha, f"{where}.ha")
        ha_spec = HaSpec(
            state=str(ha_map.get("state", "started")),
            group=ha_map.get("group"),
            max_restart=count(ha_map.get("max_restart", 1), f"{where}.ha.max_restart"),
            max_relocate=count(ha_map.get("max_relocate", 1), f"{where}.ha.max_relocate"),
        )
    return GuestSpec(
        vmid=vmid,
        type=kind,
        name=str(d.get("name") or f"{'vm' if kind == 'qemu' else 'ct'}{vmid}"),
        node=node,
        cpus=cpus,
        memory=memory,
        disk=size_bytes(d.get("disk", "16GiB"), f"{where}.disk"),
        storage=storage,
        local_disks=local,
        status=status,
        template=flag(d.get("template", False), f"{where}.template"),
        tags=tuple(sorted(tag_set)),
        pool=str(pool) if pool is not None else None,
        lock=str(d["lock"]) if d.get("lock") else None,
        ha=ha_spec,
        cpu=_profile(d.get("cpu"), f"{where}.cpu", 0.1),
        cputype=_cputype(d.get("cputype"), f"{where}.cputype", kind),
        mem=_profile(d.get("mem"), f"{where}.mem", 0.5),
        uptime=count(d.get("uptime", 86400), f"{where}.uptime", 0, int(MAX_SECONDS)),
    )


def _cpu_flags(value: Any, where: str) -> str | None:
    """A node's CPU flags, as a list or a space-separated string of /proc/cpuinfo names."""
    if value is None:
        return None
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else None
    if not names or not all(isinstance(n, str) and re.match(r"^[a-z0-9_]+$", n) for n in names):
        raise ConfigError(f"{where}: expected CPU flags as /proc/cpuinfo names them, e.g. [sse4_2, avx2], got {value!r}")
    return " ".join(names)


def _cputype(value: Any, where: str, kind: str) -> str | None:
    if value is None:
        return None
    if kind != "qemu" or not isinstance(value, str) or not re.match(r"^[A-Za-z0-9_.+-]+$", value):
        raise ConfigError(f"{where}: expected a qemu CPU type such as host or x86-64-v2-AES (VMs only), got {value!r}")
    return value


def _guest_storage(d: Mapping[str, Any], where: str, storages: tuple[StorageSpec, ...], local: bool, node: str) -> str:
    if d.get("storage"):
        name = str(d["storage"])
        spec = next((s for s in storages if s.name == name), None)
        if spec is None:
            raise ConfigError(f"{where}.storage: unknown storage {name!r}; known: {', '.join(s.name for s in storages)}")
        if not spec.on(node):
            raise ConfigError(f"{where}: storage {name!r} is not available on its node {node!r}")
        return name
    candidates = [s for s in storages if s.shared != local and s.on(node)] or [s for s in storages if s.on(node)]
    if not candidates:
        raise ConfigError(f"{where}: no storage is available on node {node!r}; add one under `storages`")
    return candidates[0].name


def _profile(data: Any, where: str, default_level: float) -> Profile:
    if data is None:
        return Profile("constant", {"level": default_level, "noise": 0.02})
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        return Profile("constant", {"level": number(data, f"{where} (a load from 0 to 1)", 0, 1), "noise": 0.02})
    d = mapping(data, where)
    kind = choice(d.get("profile", "constant"), f"{where}.profile", PROFILE_KINDS)
    defaults = PROFILE_KINDS[kind]
    unknown = sorted(set(d) - set(defaults) - {"profile"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} for profile {kind}; allowed: {', '.join(defaults)}")
    return Profile(kind, {k: number(d.get(k, v), f"{where}.{k}", *_PROFILE_RANGES.get(k, (0, 1)))
                          for k, v in defaults.items()})


def _credentials(data: Mapping[str, Any], where: str) -> tuple[Credential, ...]:
    """Tokens and users; without a scenario `acl:` list, one that grants nothing itself has every privilege."""
    full = {"/": ALL_PRIVILEGES} if data.get("acl") is None else {}
    creds: list[Credential] = []
    for i, t in enumerate(listed(data.get("tokens") or [], f"{where}.tokens")):
        t = mapping(t, f"{where}.tokens[{i}]")
        user, name = str(required(t, "user", f"{where}.tokens[{i}]")), str(required(t, "name", f"{where}.tokens[{i}]"))
        it = f"token {user}!{name}"
        creds.append(Credential(user, str(required(t, "value", it)), _acl(t, it) or full, name,
                                flag(t.get("privsep", True), f"{it}.privsep")))
    for i, u in enumerate(listed(data.get("users") or [], f"{where}.users")):
        u = mapping(u, f"{where}.users[{i}]")
        user = str(required(u, "user", f"{where}.users[{i}]"))
        password = u.get("password")
        creds.append(Credential(user, str(password) if password is not None else None, _acl(u, f"user {user}") or full))
    for cred in creds:
        if not _USERID.match(cred.user):
            raise ConfigError(f"{where}: user {cred.user!r} must be NAME@REALM, e.g. root@pam")
        if cred.name is not None and not _TOKEN_NAME.match(cred.name):
            raise ConfigError(f"{where}: token name {cred.name!r}: letters, digits, '.', '-', '_', starting with a letter")
    return tuple(creds)


def _acl(d: Mapping[str, Any], where: str) -> Mapping[str, tuple[str, ...]]:
    if "acl" in d:
        return {normalize_path(str(path)): _privileges(privs, f"{where}.acl.{path}")
                for path, privs in mapping(d["acl"], f"{where}.acl").items()}
    if "privileges" in d:
        return {"/": _privileges(d["privileges"], f"{where}.privileges")}
    return {}


def _privileges(value: Any, where: str) -> tuple[str, ...]:
    names = tuple(map(str, listed(value, where)))
    unknown = sorted(set(names) - PRIVILEGES)
    if unknown:
        raise ConfigError(f"{where}: unknown privilege(s) {', '.join(unknown)} (PVE 9 names, e.g. VM.Audit, Sys.Audit)")
    return names


def _roles(data: Any, where: str) -> Mapping[str, tuple[str, ...]]:
    roles = {str(k): _privileges(v, f"{where}.{k}") for k, v in mapping(data or {}, where).items()}
    clash = sorted(set(roles) & set(BUILTIN_ROLES))
    if clash:
        raise ConfigError(f"{where}: {', '.join(clash)} is a built-in role; pick another name")
    return roles


def _acl_entries(data: Any, where: str, roles: Mapping[str, Any], creds: tuple[Credential, ...]) -> tuple[AclEntry, ...]:
    """`acl: [{path, roles, users, tokens, propagate}]`, as `pveum acl modify` takes them."""
    known_roles = set(roles) | set(BUILTIN_ROLES)
    ids = {c.tokenid for c in creds} | {c.user for c in creds}
    entries = []
    for i, item in enumerate(listed(data or [], where)):
        d = mapping(item, f"{where}[{i}]")
        here = f"{where}[{i}]"
        reject_unknown(d, {"path", "roles", "users", "tokens", "propagate"}, here)
        path = normalize_path(str(required(d, "path", here)))
        propagate = flag(d.get("propagate", True), f"{here}.propagate")
        for role in map(str, listed(required(d, "roles", here), f"{here}.roles")):
            if role not in known_roles:
                raise ConfigError(f"{here}.roles: unknown role {role!r}; declare it under `roles`")
            for ugid in [*map(str, listed(d.get("users") or [], f"{here}.users")),
                         *map(str, listed(d.get("tokens") or [], f"{here}.tokens"))]:
                if ugid not in ids:
                    raise ConfigError(f"{here}: {ugid!r} is not a declared user or token")
                entries.append(AclEntry(path, ugid, role, propagate))
    return tuple(entries)


def _ha_rule(data: Any, where: str, guests: tuple[GuestSpec, ...], nodes: tuple[NodeSpec, ...]) -> Mapping[str, Any]:
    d = dict(mapping(data, where))
    for key in ("rule", "type", "resources"):
        required(d, key, where)
    choice(d["type"], f"{where}.type", ("node-affinity", "resource-affinity"))
    sids = {g.sid for g in guests}
    resources = d["resources"] if isinstance(d["resources"], list) else str(d["resources"]).split(",")
    for sid in resources:
        if sid not in sids:
            raise ConfigError(f"{where}: resource {sid!r} is not a guest of the scenario (write vm:100 or ct:101)")
    d["resources"] = ",".join(resources)
    if "nodes" in d:
        listed = d["nodes"] if isinstance(d["nodes"], list) else str(d["nodes"]).split(",")
        for entry in listed:
            if str(entry).split(":")[0] not in {n.name for n in nodes}:
                raise ConfigError(f"{where}: unknown node {entry!r} in nodes")
        d["nodes"] = ",".join(map(str, listed))
    return d


def _bandwidth(value: Any, where: str) -> int:
    bandwidth = size_bytes(value, where)
    if bandwidth < 1024:
        raise ConfigError(f"{where}: expected at least 1KiB per second, got {value!r}")
    return bandwidth


def _migration(data: Any, where: str) -> Migration:
    d = mapping(data, where)
    return Migration(
        bandwidth=_bandwidth(d.get("bandwidth", "1GiB"), f"{where}.bandwidth"),
        overhead_s=number(d.get("overhead_s", 4), f"{where}.overhead_s", 0, MAX_SECONDS),
        ha_delay_s=number(d.get("ha_delay_s", 5), f"{where}.ha_delay_s", 0, MAX_SECONDS),
    )
