"""Carrying out a plan: one migration after another, each re-validated against live state.

The plan's order is kept: the next move starts only when the limits allow it (in flight
cluster-wide and per node) and nothing it depends on is still running. Before each start
the live placement is read again and the move is dropped if the guest moved, is locked, the
target is offline, or the planner's own validator (`check_moves`) says the move would now
overcommit a node or break a rule. Migrations are polled to their end; a failure is recorded
and never retried in the same run, and N failures in a row stop the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import structlog

from controller.compat import keep_described
from controller.config import ApplySettings
from controller.observe import fit_usage, node_usage
from planner.model import ClusterModel, Move, Plan, Usage
from planner.policy import Policy
from planner.rules import RuleSet
from planner.verify import check_moves
from pveapi.client import PveClient
from pveapi.errors import ApiError, ErrorKind
from pveapi.inventory import Guest, Inventory
from pveapi.tasks import (
    MIGRATE_TASK,
    TRANSIENT_KINDS,
    TaskLogTail,
    TaskResult,
    exit_ok,
    read_task_log,
    task_starttime,
    task_status,
)

log = structlog.get_logger("pvebalance.executor")

Result = Literal["succeeded", "failed", "dropped", "not_started"]
# Poll errors that mean "ask again": the task keeps running on its node whatever our connection does.


@dataclass(frozen=True)
class Outcome:
    move: Move
    result: Result
    detail: str
    upid: str | None = None
    seconds: float = 0.0


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: str | None = None  # why the run ended before the last move, if it did

    def count(self, result: Result) -> int:
        return sum(1 for o in self.outcomes if o.result == result)

    @property
    def summary(self) -> str:
        parts = [f"{self.count(r)} {r.replace('_', ' ')}" for r in ("succeeded", "failed", "dropped", "not_started")]
        return ", ".join(parts) + (f" (stopped: {self.stopped})" if self.stopped else "")


# How long a migrate request that got no answer may take to show up as a task (real seconds).
ADOPT_GRACE = 60.0
# How far back, in the source node's clock, an unanswered request's task is looked for: the
# request was sent shortly before, and a guest moves at most once per run.
ADOPT_LOOKBACK = 600


@dataclass
class _Running:
    move: Move
    upid: str
    started: float
    ha: bool
    # "adopt" while a request that timed out may still have started a task, then "task", then
    # for HA guests "placement" (HA runs the real migration later)
    phase: str = "task"
    adopt_until: float = 0.0
    adopt_since: int | None = None  # where to look for the task, in the source node's clock
    log: TaskLogTail = TaskLogTail()  # the task log read so far: its transfer progress


class _RoundInventory:
    """/cluster/resources, read at most once per poll round and shared by that round's HA polls
    and re-checks (moves started earlier in the round are counted through `running`)."""

    def __init__(self, client: PveClient) -> None:
        self._client = client
        self._inventory: Inventory | None = None

    def __call__(self) -> Inventory:
        if self._inventory is None:
            self._inventory = self._client.resources()
        return self._inventory


# Called with one event (a dict with at least "event" and "vmid") per action, for terminal progress.
EventSink = Callable[[Mapping[str, Any]], None]


class Executor:
    def __init__(
        self,
        client: PveClient,
        rules: RuleSet,
        policy: Policy,
        settings: ApplySettings,
        *,
        dry_run: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,  # what it returns is ignored (tests pass the simulator's advance)
        should_stop: Callable[[], bool] = lambda: False,
        on_event: EventSink = lambda event: None,
        on_moved: Callable[[int, float], None] = lambda vmid, at: None,
        on_not_started: Callable[[int], None] = lambda vmid: None,
        may_start: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.client = client
        self.rules = rules
        self.policy = policy
        self.settings = settings
        self.dry_run = dry_run
        self.clock = clock
        self.sleep = sleep
        self.should_stop = should_stop
        self.on_event = on_event
        self.on_moved = on_moved  # a migration may have started, and when one with a task ended (cooldown)
        # The API answered that no migration started (refused, e.g. 403), or no task appeared:
        # the guest did not move, so the mark `on_moved` set before the request is taken back.
        self.on_not_started = on_not_started
        # Asked right before each migration starts: None, or why no migration may start any more
        # (the controller lease was lost); running ones are still watched to their end.
        self.may_start = may_start

    def apply(self, plan: Plan, base: ClusterModel) -> ApplyReport:
        """Carry out `plan`, observed as `base` (usage figures and maintenance come from it)."""
        report = ApplyReport()
        pending = list(plan.moves)
        running: list[_Running] = []
        done: list[Move] = []  # moves that ended on their target in this run
        failures_in_a_row = 0
        while pending or running:
            live = _RoundInventory(self.client)
            for item in list(running):
                outcome = self._poll(item, live)
                if outcome is None:
                    continue
                running.remove(item)
                self._record(report, outcome)
                if outcome.result == "succeeded":
                    done.append(item.move)
                    failures_in_a_row = 0
                else:
                    failures_in_a_row += 1
            stop = self._stop_reason(failures_in_a_row)
            if stop is not None and pending:
                report.stopped = stop
                for move in pending:
                    self._record(report, Outcome(move, "not_started", stop))
                pending.clear()
            while pending and self._slot_free(pending[0], running):
                move = pending.pop(0)
                checked = self._recheck(move, live(), running, done, base)
                if isinstance(checked, str):
                    self._record(report, Outcome(move, "dropped", checked))
                    continue
                refused = None if self.dry_run else self.may_start()
                if refused is not None:
                    report.stopped = refused
                    for left in [move, *pending]:
                        self._record(report, Outcome(left, "not_started", refused))
                    pending.clear()
                    break
                started = self._start(move, checked)
                if isinstance(started, _Running):
                    running.append(started)
                    continue
                self._record(report, started)
                if started.result == "succeeded":  # a dry run: counted as done so later checks see it
                    done.append(move)
                if started.result != "failed":
                    continue
                failures_in_a_row += 1
                if self._stop_reason(failures_in_a_row) is not None:
                    break
            if running or (pending and self._stop_reason(failures_in_a_row) is None):
                self.sleep(self.settings.poll_interval)
        return report

    # --- deciding -------------------------------------------------------------------------

    def _stop_reason(self, failures_in_a_row: int) -> str | None:
        if self.should_stop():
            return "stop requested: running migrations were left to finish"
        if failures_in_a_row >= self.settings.max_consecutive_failures:
            return f"{failures_in_a_row} migrations failed in a row (apply.max_consecutive_failures)"
        return None

    def _slot_free(self, move: Move, running: list[_Running]) -> bool:
        if len(running) >= self.settings.max_in_flight:
            return False
        if any(r.move.source == move.target for r in running):
            return False  # the target frees memory only when its outgoing migration ends
        if sum(r.move.target == move.target for r in running) >= self.policy.max_inflow:
            return False  # policy.max_inflow: migrations landing on one node at once
        per_node = self.settings.max_in_flight_per_node
        busy = [n for r in running for n in (r.move.source, r.move.target)]
        return busy.count(move.source) < per_node and busy.count(move.target) < per_node

    def _recheck(
        self, move: Move, inventory: Inventory, running: list[_Running], done: list[Move], base: ClusterModel
    ) -> Guest | str:
        """The guest, live, when the move may start; otherwise why it is dropped."""
        if any(m.vmid == move.vmid for m in done) or any(r.move.vmid == move.vmid for r in running):
            return "the guest already moved in this run: a guest moves at most once per run"
        guest = inventory.guest(move.vmid)
        if guest is None:
            return "the guest no longer exists"
        if guest.node != move.source:
            return f"the guest is on {guest.node} now, not {move.source}"
        if guest.lock:
            return f"the guest is locked ({guest.lock})"
        target = inventory.node(move.target)
        if target is None or not target.online:
            return f"target {move.target} is offline"
        source = inventory.node(move.source)
        if source is None or not source.online:
            return f"source {move.source} is offline"
        model = _current_model(base, inventory, [r.move for r in running], done)
        problems = check_moves(model, self.rules, self.policy, (move,))
        return "no longer valid: " + "; ".join(problems) if problems else guest

    # --- acting ---------------------------------------------------------------------------

    def _start(self, move: Move, guest: Guest) -> _Running | Outcome:
        params: dict[str, Any] = {"target": move.target}
        bwlimit = self.policy.bwlimit_for(move.source, move.target)
        if bwlimit is not None:
            params["bwlimit"] = bwlimit
        if guest.type == "qemu":
            if guest.running:
                params["online"] = 1
            if self.policy.allow_local_disks:
                params["with-local-disks"] = 1
        elif guest.running:
            params["restart"] = 1
            params["timeout"] = self.settings.lxc_shutdown_timeout
        bound = log.bind(vmid=move.vmid, node=move.source, target=move.target)
        if self.dry_run:
            bound.info("migration.dry_run", params=params)
            return Outcome(move, "succeeded", "dry run: not started")
        # The cooldown starts before the request: a controller killed right after it still
        # remembers, on restart, that this guest may be moving.
        self.on_moved(move.vmid, self.clock())
        try:
            upid = self.client.post(f"/nodes/{move.source}/{guest.type}/{move.vmid}/migrate", **params)
        except ApiError as exc:
            if exc.kind is ErrorKind.TIMEOUT or (exc.kind is ErrorKind.UNREACHABLE and exc.status is None):
                # Sent but unanswered: the task may exist. Keep its slots until we know.
                bound.warning("migration.unconfirmed", error=str(exc))
                return _Running(move, "", self.clock(), guest.ha_managed, "adopt", time.monotonic() + ADOPT_GRACE)
            self.on_not_started(move.vmid)
            return Outcome(move, "failed", f"refused: {exc}")
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return Outcome(move, "failed", f"the API answered {upid!r} instead of a task id")
        bound.info("migration.started", task=upid, ha=guest.ha_managed, reason=move.reason)
        self.on_event({"event": "started", "vmid": move.vmid, "move": move, "upid": upid})
        return _Running(move, upid, self.clock(), guest.ha_managed)

    def _poll(self, item: _Running, live: _RoundInventory) -> Outcome | None:
        elapsed = self.clock() - item.started
        if item.phase == "adopt":
            found = self._find_task(item)
            if found is None:
                if time.monotonic() < item.adopt_until:
                    return None
                self.on_not_started(item.move.vmid)
                return Outcome(item.move, "failed", "the migrate request got no answer and no task appeared")
            item.upid, item.phase = found, "task"
            log.info("migration.started", vmid=item.move.vmid, node=item.move.source, target=item.move.target, task=found)
            self.on_event({"event": "started", "vmid": item.move.vmid, "move": item.move, "upid": found})
        if item.phase == "placement":
            outcome = self._ha_outcome(item, elapsed, live)
            if outcome is not None:
                return outcome
        else:
            try:
                status: TaskResult = task_status(self.client, item.upid)
            except ApiError as exc:
                if exc.kind not in TRANSIENT_KINDS:
                    return Outcome(item.move, "failed", f"task status unreadable: {exc}", item.upid, elapsed)
            else:
                if status.finished and not status.ok:
                    return Outcome(item.move, "failed", f"task ended: {status.exitstatus}", item.upid, elapsed)
                if status.finished and not item.ha:
                    return Outcome(item.move, "succeeded", "task OK", item.upid, elapsed)
                if status.finished:
                    item.phase = "placement"  # hamigrate only queued the move with the HA manager
                    return self._poll(item, live)
                self._read_log(item)
        if elapsed > self.settings.task_timeout:
            return Outcome(
                item.move, "failed", f"not finished after {self.settings.task_timeout:.0f}s (apply.task_timeout)",
                item.upid, elapsed,
            )
        self.on_event({
            "event": "running", "vmid": item.move.vmid, "move": item.move, "upid": item.upid, "seconds": elapsed,
            "transferred": item.log.transferred,
        })
        return None

    def _read_log(self, item: _Running) -> None:
        """The running task's new log lines, once per poll round: how much it has copied."""
        try:
            item.log = read_task_log(self.client, item.upid, item.log)
        except ApiError as exc:  # progress is a nicety: the task status decides the outcome
            log.debug("migration.log_unread", vmid=item.move.vmid, task=item.upid, error=str(exc))

    def _find_task(self, item: _Running) -> str | None:
        """The UPID of the newest migration task of the guest on its source since shortly before
        the unanswered request, if it exists yet."""
        move = item.move
        kind = "hamigrate" if item.ha else MIGRATE_TASK[move.type]
        try:
            if item.adopt_since is None:
                # A UPID's start is stamped by its node's clock: bound the search by that clock,
                # not ours, so a controller whose clock is off does not miss the task.
                item.adopt_since = int(self.client.get(f"/nodes/{move.source}/time")["time"]) - ADOPT_LOOKBACK
            tasks = self.client.get(
                f"/nodes/{move.source}/tasks", vmid=move.vmid, typefilter=kind, source="all", since=item.adopt_since,
            )
        except (ApiError, KeyError, TypeError, ValueError):  # not answered (yet), or not the documented shape
            return None
        upids = [str(t["upid"]) for t in tasks if isinstance(t, Mapping) and t.get("upid")] if isinstance(tasks, list) else []
        return max(upids, key=task_starttime, default=None)

    def _ha_outcome(self, item: _Running, elapsed: float, live: _RoundInventory) -> Outcome | None:
        """After `hamigrate`, the HA manager starts the real migration on the source later:
        done when the guest shows on the target, failed when that follow-up task failed."""
        move = item.move
        try:
            guest = live().guest(move.vmid)
            if guest is not None and guest.node == move.target and not guest.lock:
                return Outcome(move, "succeeded", "HA moved it", item.upid, elapsed)
            if guest is not None and guest.hastate == "error":
                return Outcome(move, "failed", "HA reports the guest in error state", item.upid, elapsed)
            since = task_starttime(item.upid)
            tasks = self.client.get(
                f"/nodes/{move.source}/tasks", vmid=move.vmid, since=since, source="all",
                typefilter=MIGRATE_TASK[move.type],
            )
        except ApiError as exc:
            if exc.kind in TRANSIENT_KINDS:
                return None
            return Outcome(move, "failed", f"HA migration not observable: {exc}", item.upid, elapsed)
        for task in tasks if isinstance(tasks, list) else []:
            status = task.get("status") if isinstance(task, Mapping) else None
            if status is not None and not exit_ok(str(status)):
                return Outcome(move, "failed", f"HA migration task ended: {status}", str(task.get("upid")), elapsed)
        return None

    def _record(self, report: ApplyReport, outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        move = outcome.move
        if outcome.result in ("succeeded", "failed") and outcome.upid and not self.dry_run:
            self.on_moved(move.vmid, self.clock())  # a task existed: the cooldown runs from its end
        event = f"migration.{outcome.result}"
        fields = {"vmid": move.vmid, "node": move.source, "target": move.target, "task": outcome.upid,
                  "detail": outcome.detail, "seconds": round(outcome.seconds, 1)}
        (log.warning if outcome.result == "failed" else log.info)(event, **fields)
        self.on_event({"event": outcome.result, "vmid": move.vmid, "move": move, "outcome": outcome})


def _current_model(base: ClusterModel, inventory: Inventory, running: list[Move], done: list[Move]) -> ClusterModel:
    """The live cluster, with running migrations counted on their target (the safe side for
    rules and room). Each guest's memory is the larger of the observation's and its live
    reading, and node totals are recomputed from the live nodes, so memory that grew since the
    plan was made is counted before the next migration starts."""
    heading = {m.vmid: m for m in [*done, *running]}
    usage = {g.vmid: fit_usage(base.guest_usage.get(g.vmid), g) for g in inventory.guests}
    totals = node_usage(inventory.nodes, inventory.guests, usage)
    guests = []
    for guest in inventory.guests:
        move = heading.get(guest.vmid)
        if move is None or guest.node != move.source:
            guests.append(guest)
            continue
        guests.append(replace(guest, node=move.target))
        moved = usage[guest.vmid]
        for name, sign in ((move.source, -1), (move.target, 1)):
            if name in totals:
                old = totals[name]
                totals[name] = Usage(
                    max(0.0, old.cpu_cores + sign * moved.cpu_cores), max(0, old.mem_bytes + sign * moved.mem_bytes), old.source
                )
    fresh = replace(base, nodes=inventory.nodes, guests=tuple(guests), guest_usage=usage, node_usage=totals)
    return keep_described(base, fresh)
