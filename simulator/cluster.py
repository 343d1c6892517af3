"""The running simulated cluster: placement, locks, node states, tasks and timed events.

All mutation happens here, under one lock. Events (migration ends, node on/offline) sit in a
heap keyed by virtual time; `tick()` runs every due event in time order before any answer
is computed, so advancing the clock replays what would have happened meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import structlog

from .clock import VirtualClock
from .failure import PveFailure, param_error
from .loadmodel import unit
from .scenario import GuestSpec, NodeSpec, Scenario
from .tasks import PROGRESS_LINES, Task, format_upid, migration_progress_line

if TYPE_CHECKING:
    from .figures import NodeFigures

log = structlog.get_logger("pvebalance.sim")

HA_MANAGER_USER = "root@pam"


T = TypeVar("T")


def _value_at(history: list[tuple[float, T]], t: float) -> T:
    """The value in effect at `t` in a (since, value) history, oldest first."""
    current = history[0][1]
    for since, value in history:
        if since > t:
            break
        current = value
    return current


@dataclass
class GuestState:
    spec: GuestSpec
    node: str
    status: str
    lock: str | None
    hastate: str | None
    placement: list[tuple[float, str]]  # (since, node), oldest first
    since: float  # when the I/O counters last reset (start, restart, migration)
    boot: float  # when the guest started (uptime)
    rates: dict[str, float] | None = None  # constant I/O rates (figures.io_rates)

    def node_at(self, t: float) -> str:
        return _value_at(self.placement, t)


@dataclass
class NodeState:
    spec: NodeSpec
    online: bool
    history: list[tuple[float, bool]]  # (since, online), oldest first
    boot: float
    pids: itertools.count[int] = field(default_factory=itertools.count)
    ever: set[int] = field(default_factory=set)  # vmids ever placed here (rrddata looks back)
    # HA maintenance (`ha-manager crm-command node-maintenance enable|disable`): the scenario's
    # `maintenance` at start, then toggled through the admin API.
    maintenance: bool = False

    def online_at(self, t: float) -> bool:
        return _value_at(self.history, t)

    def online_throughout(self, start: float, end: float) -> bool:
        """Online at `start` and never offline until `end` (a migration's peer must stay up)."""
        return self.online_at(start) and not any(start < since <= end and not up for since, up in self.history)


@dataclass
class MigrationFailure:
    """A rule making some migration tasks fail (from a `migration_failure` fault)."""

    fault_id: str
    vmids: frozenset[int] | None
    rate: float
    message: str


class SimCluster:
    def __init__(self, scenario: Scenario, clock: VirtualClock, seed: int) -> None:
        self.scenario = scenario
        self.clock = clock
        self.seed = seed
        self.lock = threading.RLock()
        self.version = 0  # bumped on every placement or state change (answer caches key on it)
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._rng = random.Random(seed)
        self.migration_failures: list[MigrationFailure] = []
        self.tasks: dict[str, Task] = {}
        self.level_memo: dict[tuple[int, int, float], float] = {}  # see figures._level
        self.figures_memo: dict[tuple[int, str, float], NodeFigures | None] = {}  # see figures.node_figures
        origin = clock.origin
        self.origin = origin
        self.nodes: dict[str, NodeState] = {}
        for n in scenario.nodes:
            key = zlib.crc32(n.name.encode())
            boot = origin - 86400 * (3 + int(unit(seed, key, 7, 0) * 40))
            self.nodes[n.name] = NodeState(n, n.online, [(float("-inf"), n.online)], boot,
                                           itertools.count(0x1000 + int(unit(seed, key, 8, 0) * 0x40000)),
                                           maintenance=n.maintenance)
        self.pools: dict[str, str | None] = {p: c or None for p, c in scenario.pools.items()}  # id -> comment
        self.guests: dict[int, GuestState] = {}
        for g in scenario.guests:
            running = g.status != "stopped"
            hastate = g.ha.state if g.ha else None
            boot = origin - g.uptime if running else origin
            self.guests[g.vmid] = GuestState(g, g.node, g.status, g.lock, hastate, [(float("-inf"), g.node)],
                                             boot, boot)
            self.nodes[g.node].ever.add(g.vmid)

    # -- time ---------------------------------------------------------------------------
    def tick(self) -> float:
        """Run every event due by now, in time order; return the current virtual time."""
        with self.lock:
            now = self.clock.now()
            while self._events and self._events[0][0] <= now:
                at, _, action = heapq.heappop(self._events)
                action(at)
            return now

    def schedule(self, at: float, action: Callable[[float], None]) -> None:
        with self.lock:
            heapq.heappush(self._events, (at, next(self._seq), action))

    # -- queries ------------------------------------------------------------------------
    @property
    def api_node(self) -> NodeState:
        """The node the API is served from (`local: 1` in /cluster/status): the first one."""
        return next(iter(self.nodes.values()))

    @property
    def quorate(self) -> bool:
        return sum(n.online for n in self.nodes.values()) * 2 > len(self.nodes)

    def node(self, name: str) -> NodeState:
        state = self.nodes.get(name)
        if state is None:
            raise PveFailure(500, f"no such cluster node '{name}'")
        return state

    def guest_on(self, node: str, kind: str, vmid: int) -> GuestState:
        guest = self.guests.get(vmid)
        if guest is None or guest.node != node or guest.spec.type != kind:
            conf = "qemu-server" if kind == "qemu" else "lxc"
            raise PveFailure(500, f"Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist")
        return guest

    def guests_on(self, node: str) -> list[GuestState]:
        return [g for g in self.guests.values() if g.node == node]

    # -- node state ---------------------------------------------------------------------
    def set_online(self, name: str, online: bool, at: float | None = None) -> None:
        with self.lock:
            state = self.node(name)
            at = self.clock.now() if at is None else at
            if state.online == online:
                return
            state.online = online
            state.history.append((at, online))
            if online:
                state.boot = at
                for guest in self.guests_on(name):
                    if guest.status != "stopped":
                        guest.boot = guest.since = at  # the node rebooted: its guests restarted
            self.version += 1
            log.info("node_online" if online else "node_offline", node=name, at=int(at))

    def set_maintenance(self, name: str, enabled: bool) -> None:
        """HA node maintenance, as `ha-manager crm-command node-maintenance enable|disable NAME`
        sets it (PVE 9 has no API endpoint for it). Only the state the HA status and
        /cluster/resources show: the simulated CRM does not move HA guests off on its own."""
        with self.lock:
            state = self.node(name)
            if state.maintenance != enabled:
                state.maintenance = enabled
                self.version += 1
                log.info("node_maintenance", node=name, enabled=enabled)

    # -- migration ----------------------------------------------------------------------
    def migrate(self, node: str, kind: str, vmid: int, params: Mapping[str, str], user: str) -> str:
        """Validate like PVE, then start the task; returns its UPID or raises PveFailure."""
        with self.lock:
            now = self.tick()
            self.node(node)
            guest = self.guest_on(node, kind, vmid)
            options = params  # the schema check has vetted them
            target = options["target"]
            if target == node:
                raise param_error({"target": "target is local node."})
            if not self.quorate:
                raise PveFailure(500, "cluster not ready - no quorum?")
            target_state = self.node(target)
            if guest.spec.ha is not None:
                return self._start_ha_migration(guest, target, user, now)
            if not target_state.online:
                raise PveFailure(500, f"Unable to get IP for node '{target}' - node offline?")
            self._check_movable(guest, target, options)
            return self._start_migration(guest, target, options, user, now)

    def node_major(self, name: str) -> int:
        return self.nodes[name].spec.major

    def _check_movable(self, guest: GuestState, target: str, options: Mapping[str, str]) -> None:
        spec = guest.spec
        running = guest.status != "stopped"
        if guest.lock:
            raise PveFailure(500, f"{'VM' if spec.type == 'qemu' else 'CT'} is locked ({guest.lock})")
        if spec.type == "qemu":
            if running and options.get("online") != "1":
                raise PveFailure(500, "can't migrate running VM without --online")
            if running and spec.local_disks and options.get("with-local-disks") != "1":
                raise PveFailure(500, f"can't live migrate attached local disks without with-local-disks option "
                                      f"(local disk '{spec.volid}')")
        elif running and options.get("restart") != "1" and options.get("online") != "1":
            raise PveFailure(500, "can't migrate running container without --online or --restart")
        storage = self.scenario.storage(spec.storage)
        if not storage.on(target) and not (options.get("targetstorage") or options.get("target-storage")):
            raise PveFailure(500, f"storage '{storage.name}' is not available on node '{target}'")

    def new_task(self, node: str, kind: str, ident: str, user: str, now: float) -> Task:
        state = self.nodes[node]
        pid = next(state.pids)
        pstart = int((now - state.boot) * 100)  # jiffies since the node booted, as PVE records it
        upid = format_upid(node, pid, pstart, int(now), kind, ident, user)
        task = Task(upid, node, pid, pstart, int(now), kind, ident, user)
        self.tasks[upid] = task
        return task

    def migration_bandwidth(self, options: Mapping[str, str]) -> float:
        """Bytes per second a migration copies at: the scenario's, or a smaller `bwlimit`."""
        bandwidth = float(self.scenario.migration.bandwidth)
        if options.get("bwlimit"):
            bandwidth = min(bandwidth, int(options["bwlimit"]) * 1024.0) or bandwidth
        return bandwidth

    def migration_seconds(self, guest: GuestState, options: Mapping[str, str]) -> float:
        bandwidth = self.migration_bandwidth(options)
        seconds = self.scenario.migration.overhead_s
        if guest.status != "stopped" and guest.spec.type == "qemu":
            seconds += guest.spec.memory / bandwidth
        if guest.spec.local_disks:
            seconds += guest.spec.disk / bandwidth
        return seconds

    def _start_migration(self, guest: GuestState, target: str, options: Mapping[str, str], user: str,
                         now: float) -> str:
        spec = guest.spec
        source = guest.node
        kind = "qmigrate" if spec.type == "qemu" else "vzmigrate"
        task = self.new_task(source, kind, str(spec.vmid), user, now)
        task.log.append(f"{_stamp(now)} starting migration of {'VM' if spec.type == 'qemu' else 'CT'} "
                        f"{spec.vmid} to node '{target}'")
        if spec.type == "lxc" and guest.status != "stopped" and options.get("restart") != "1":
            task.finish(now, "lxc live migration is currently not implemented")
            self.version += 1
            return task.upid
        if options.get("bwlimit"):
            task.bwlimit = int(options["bwlimit"])
            task.log.append(f"{_stamp(now)} migration speed limit: {task.bwlimit} KiB/s")
        guest.lock = "migrate"
        if guest.hastate:
            guest.hastate = "migrate"
        self.version += 1
        duration = self.migration_seconds(guest, options)
        log.info("migration_started", vmid=spec.vmid, node=source, target=target, task=task.upid,
                 seconds=round(duration, 1))
        self.schedule(now + duration, lambda at: self._finish_migration(guest, source, target, task, now, at))
        if guest.status != "stopped" and spec.type == "qemu":
            self._log_ram_transfer(task, spec.memory, self.migration_bandwidth(options), now + duration)
        return task.upid

    def _log_ram_transfer(self, task: Task, memory: int, bandwidth: float, end: float) -> None:
        """A live VM's RAM is copied last, up to the task's end: progress lines in its log meanwhile."""
        seconds = memory / bandwidth
        for step in range(PROGRESS_LINES):
            copied = memory * step / PROGRESS_LINES

            def line(at: float, copied: float = copied) -> None:
                if task.status == "running":
                    task.log.append(f"{_stamp(at)} {migration_progress_line(copied, memory, bandwidth)}")

            self.schedule(end - seconds + seconds * step / PROGRESS_LINES, line)

    def _finish_migration(self, guest: GuestState, source: str, target: str, task: Task, started: float,
                          at: float) -> None:
        guest.lock = None
        if guest.hastate == "migrate":
            guest.hastate = "started"
        failure = self._failure_for(guest.spec.vmid)
        # A node lost while the task ran ends it, even if it is back: the copy's connection broke.
        if failure is None and not self.nodes[target].online_throughout(started, at):
            failure = "migration aborted"
        if failure is None and not self.nodes[source].online_throughout(started, at):
            failure = "migration problems"
        self.version += 1
        if failure is not None:
            task.log.append(f"{_stamp(at)} ERROR: {failure}")
            task.finish(at, failure)
            log.info("migration_failed", vmid=guest.spec.vmid, node=source, target=target, task=task.upid, error=failure)
            return
        guest.node = target
        guest.placement.append((at, target))
        guest.since = at
        if guest.spec.type == "lxc" and guest.status != "stopped":
            guest.boot = at  # a restart migration restarts the container
        self.nodes[target].ever.add(guest.spec.vmid)
        task.log.append(f"{_stamp(at)} migration finished successfully")
        task.finish(at, "OK")
        log.info("migration_finished", vmid=guest.spec.vmid, node=source, target=target, task=task.upid)

    def _failure_for(self, vmid: int) -> str | None:
        for rule in self.migration_failures:
            if rule.vmids is not None and vmid not in rule.vmids:
                continue
            if self._rng.random() < rule.rate:
                return rule.message
        return None

    def _start_ha_migration(self, guest: GuestState, target: str, user: str, now: float) -> str:
        """PVE hands HA guests to the HA manager: a short `hamigrate` task, the move comes later."""
        spec = guest.spec
        source = guest.node
        task = self.new_task(source, "hamigrate", str(spec.vmid), user, now)
        task.log.append(f"{_stamp(now)} requesting HA migration for {spec.sid} to node {target}")
        self.version += 1

        def accepted(at: float) -> None:
            task.finish(at, "OK")
            self.version += 1

        def relocate(at: float) -> None:
            # The CRM moves a running CT by restarting it, a running VM online.
            options = {"target": target, "online": "1"} if spec.type == "qemu" else {"target": target, "restart": "1"}
            if guest.node != source or guest.lock:
                return
            try:
                if not self.nodes[target].online:
                    raise PveFailure(500, f"target node '{target}' is not online")
                self._check_movable(guest, target, {**options, "with-local-disks": "1"})
            except PveFailure as refusal:
                failed = self.new_task(source, "qmigrate" if spec.type == "qemu" else "vzmigrate",
                                       str(spec.vmid), HA_MANAGER_USER, at)
                failed.finish(at, refusal.message)
                self.version += 1
                return
            self._start_migration(guest, target, {**options, "with-local-disks": "1"}, HA_MANAGER_USER, at)

        self.schedule(now + 1, accepted)
        self.schedule(now + self.scenario.migration.ha_delay_s, relocate)
        return task.upid


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
