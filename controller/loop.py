"""`pvebalance run`: plan every interval (or at once on a webhook), publish, and in automatic
mode carry the plan out, with hysteresis, per-guest cooldowns and one controller per cluster.

Safety, in the order a cycle checks it: a cycle whose data is stale or missing never
migrates; only the instance holding the local lock and the cluster lease migrates, and it
confirms the lease before each migration; balancing moves wait until
the imbalance has stayed above the trigger for `hold_time` (moves that repair a broken rule
or evacuate a maintenance node do not wait); a guest that moved (or failed to) within
`cooldown` is left where it is, across restarts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import structlog

from controller.config import Config
from controller.cycle import Cycle, cooldown_holds, run_cycle
from controller.drainstate import DrainState
from controller.endpoints import Endpoints
from controller.executor import ApplyReport, EventSink, Executor, Outcome
from controller.lease import cluster_lease
from controller.metrics import ControllerMetrics
from controller.observe import cluster_identity
from controller.operations import MigrationLog, Operations
from controller.outcomes import OutcomeLog, OutcomeMetrics, find_ping_pongs, observe_due, record_report
from controller.promql import PromQL
from controller.reload import restart_only_changes
from controller.reviewed import Reviewed, plan_document
from controller.state import ControllerBusy, ControllerLock, LoopState
from planner.model import Move, MoveKind, Plan
from planner.rules import RuleSet
from pveapi.client import PveClient
from pveapi.errors import ApiError, ConfigError, PvebalanceError

log = structlog.get_logger("pvebalance.loop")
Loaded = tuple[Config, PveClient, PromQL | None]  # what `pvebalance run` builds from its config file


@dataclass(frozen=True)
class CycleSummary:
    result: str  # planned, applied, skipped, failed
    reason: str
    at: float
    moves: int = 0
    report: ApplyReport | None = None


class Controller:
    def __init__(
        self,
        config: Config,
        client: PveClient,
        promql: PromQL | None,
        *,
        metrics: ControllerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,  # what it returns is ignored (tests pass the simulator's advance)
        dry_run: bool = False,
    ) -> None:
        self.config = config
        self.client = client
        self.promql = promql
        self.metrics = metrics or ControllerMetrics()
        self.clock = clock
        self.sleep = sleep
        self.dry_run = dry_run
        self._state: LoopState | None = None  # read at the first cycle: the API may be down at start
        self.outcomes = OutcomeLog.load(config.run.state_file, config.run.outcomes_kept, writable=not dry_run)
        self.outcome_metrics = OutcomeMetrics(self.metrics.registry)
        self.lock = ControllerLock(config.run.state_file)
        # Every mode may migrate: automatic in the loop, manual when an operator asks through the API.
        self.lease = cluster_lease(client, config.run, dry_run)
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._wake_reason = ""
        self._started = clock()
        self.last: CycleSummary | None = None
        self.last_success: float | None = None
        self.current_plan: Mapping[str, Any] | None = None
        self.last_cycle: Cycle | None = None
        self.busy_reason: str | None = None
        self.acting = threading.Lock()  # one migration run at a time: the loop's or one the API started
        self.migration_log = MigrationLog()
        self.operations = Operations(self)
        self.metrics.publish_automation(config.run.automation)
        self._reloaded: Loaded | None = None  # read on SIGHUP, swapped in before the next cycle
        self._reloading = threading.Lock()

    # --- triggers -------------------------------------------------------------------------

    def trigger(self, reason: str) -> None:
        """Start a cycle now (webhook); a cycle already running is not interrupted."""
        self._wake_reason = reason
        self._wake.set()

    def stop(self) -> None:
        """Start nothing new; running migrations are left to finish; the loop then returns."""
        self.stopping.set()
        self._wake.set()

    def reload(self, load: Callable[[], Loaded]) -> None:
        """SIGHUP: read the config file now, so a bad one is one error event at once (the old
        one stays); a good one is swapped in before the next cycle, which starts at once."""
        try:
            loaded = load()
            changed = restart_only_changes(self.config, loaded[0])
            if changed:
                raise ConfigError(f"{', '.join(changed)} change only with a restart (systemctl restart pvebalance)")
        except PvebalanceError as exc:
            log.error("config.reload_failed", error=str(exc), hint="still running on the previous config; fix the file and reload again")
            return
        with self._reloading:
            self._reloaded = loaded
        self.trigger("reload")

    def _swap_reloaded(self) -> None:
        """Between cycles, never during a migration run (the loop's or one started through the API)."""
        if self._reloaded is None or not self.acting.acquire(blocking=False):
            return  # an API-started run is going on: the cycle after it takes the new config
        try:
            with self._reloading:
                loaded, self._reloaded = self._reloaded, None
            if loaded is None:
                return
            self.config, self.client, self.promql = loaded
            if self.lease is not None:
                self.lease.client = self.client  # the same pool and holder; the new file's token
            self.metrics.publish_automation(self.automation)
        finally:
            self.acting.release()
        log.info("config.reloaded", source=self.config.source, automation=self.automation)

    def run_forever(self) -> None:
        reason = "start"
        try:
            while not self.stopping.is_set():
                self._swap_reloaded()
                self.cycle(reason)
                self._wake.wait(timeout=self.config.run.interval)
                reason = self._wake_reason or "interval"
                self._wake.clear()
                self._wake_reason = ""
        finally:
            self.operations.wait(timeout=self.config.apply.task_timeout)  # they saw `stopping`: nothing new starts
            if self._state is not None:
                self._state.save()
            self.release()
            log.info("loop.stopped", last=self.last.result if self.last else None)

    def release(self) -> None:
        """Give back the cluster lease and the local lock (on exit; another controller may then act)."""
        if self.lease is not None:
            self.lease.release()
        self.lock.release()
        self.metrics.lock_held.set(0)

    # --- one cycle ------------------------------------------------------------------------

    def read_state(self) -> None:
        """Read the state file now: one that belongs to another cluster (ConfigError) stops the
        command before it starts; an API that does not answer yet leaves it to the first cycle."""
        try:
            _ = self.state  # the property reads it once
        except ApiError as exc:
            log.warning("state.deferred", reason=str(exc))

    @property
    def state(self) -> LoopState:
        """This cluster's state file (a dry run reads it and never writes it)."""
        if self._state is None:
            self._state = LoopState.load(self.config.run.state_file, cluster_identity(self.client), writable=not self.dry_run)
            self.metrics.publish_automation(self.automation)  # an operator's choice from before a restart
        return self._state

    @property
    def automation(self) -> str:
        """manual, automatic or paused: the operator's choice (PUT /api/v1/automation, kept in
        the state file), else run.automation."""
        chosen = self._state.automation if self._state is not None else None
        return chosen or self.config.run.automation

    def set_automation(self, mode: str) -> None:
        self.state.automation = mode
        self.state.save()
        self.metrics.publish_automation(mode)
        if mode != "automatic" and not self.acting.locked():
            self.release()  # another controller may migrate now

    @property
    def paused(self) -> str | None:
        """Why nothing may migrate, when automation is paused; else None."""
        if self.automation == "paused":
            return "automation is paused: nothing migrates until PUT /api/v1/automation sets manual or automatic"
        return None

    def may_act(self) -> str | None:
        """None when a migration run may start now (the caller holds `acting`); else why not."""
        if self.stopping.is_set():
            return "the controller is stopping"
        paused = self.paused
        if paused is not None:
            return paused
        if self.dry_run:
            return None
        return None if self._hold_lock() else self.busy_reason

    def done_acting(self) -> None:
        """After an API run: outside automatic mode the lock and lease go back at once."""
        if self.automation != "automatic":
            self.release()

    def cycle(self, trigger: str = "interval") -> CycleSummary:
        now = self.clock()
        log.info("cycle.start", trigger=trigger, automation=self.automation)
        try:
            summary = self._cycle(now)
        except PvebalanceError as exc:
            summary = CycleSummary("failed", str(exc), now)
        self.metrics.cycles.labels(summary.result).inc()
        if summary.result in ("planned", "applied"):
            self.last_success = self.clock()
            self.metrics.last_success.set(self.last_success)
        self.last = summary
        (log.warning if summary.result == "failed" else log.info)(
            "cycle.end", result=summary.result, reason=summary.reason, moves=summary.moves, trigger=trigger
        )
        return summary

    def _cycle(self, now: float) -> CycleSummary:
        automation = self.automation
        automatic = automation == "automatic"
        # Taken before planning, so a second instance says at once why it will not migrate.
        may_migrate = automatic and (self.dry_run or self._hold_lock())  # a dry run takes no lock: it writes nothing
        self.state.forget_before(now - self.config.run.cooldown)
        drained = DrainState.load(self.config.run.state_file).drained  # read once: the plan's rules and the metric
        hold = cooldown_holds(self.client, self.config, self.state, now)
        cycle = run_cycle(self.client, self.promql, self.config, hold, at=now, drained=drained)
        self._publish(cycle, now, drained)
        self._check_outcomes(cycle, now)
        balance_ready = self._hysteresis(cycle.plan, now)
        if not automatic:
            return CycleSummary("planned", f"{automation} automation: plan published, nothing migrated", now, len(cycle.plan.moves))
        if not may_migrate:
            return CycleSummary("skipped", self.busy_reason or "", now)
        if not cycle.actionable:
            return CycleSummary("skipped", cycle.why_not or "", now)
        moves = cycle.plan.moves if balance_ready else _mandatory_prefix(cycle.plan)
        windows = self.config.run.windows
        window_bound = windows is not None and not (windows.mandatory_outside and moves == _mandatory_prefix(cycle.plan))
        if windows is not None and not windows.inside(now):
            if not windows.mandatory_outside:
                return CycleSummary("skipped", f"outside the migration windows (run.windows); {self._next_open(now)}", now)
            moves, window_bound = _mandatory_prefix(cycle.plan), False
        if not moves:
            why = "nothing to do" if not cycle.plan.moves else (
                f"imbalance not above the trigger for run.hold_time ({self.config.run.hold_time:.0f}s) yet"
            )
            return CycleSummary("planned", why, now)
        if not self.acting.acquire(blocking=False):
            return CycleSummary("skipped", "migrations an operator started through the API are running", now)
        try:
            if self.automation != "automatic":  # switched through the API while this cycle planned
                return CycleSummary("planned", f"{self.automation} automation: plan published, nothing migrated", now)
            plan = replace(cycle.plan, moves=moves)
            run = self.migration_log.new_run(moves, "automation", "cycle")
            report = self.executor(cycle.rules, run, window_bound).apply(plan, cycle.model)
        finally:
            self.acting.release()
        self.count(report)
        if not self.dry_run and record_report(self.outcomes, cycle.plan, report, self.clock()) is not None:
            self.outcome_metrics.publish(self.outcomes, self.config.run.outcome_horizons)
        return CycleSummary("applied", report.summary, now, len(moves), report)

    def _check_outcomes(self, cycle: Cycle, now: float) -> None:
        """Measure the horizons past applied plans have reached, and count guests that came back."""
        run = self.config.run
        if self.promql is not None:
            observe_due(self.outcomes, self.promql, run.outcome_horizons, self.config.policy, now)
        self.outcome_metrics.ping_pongs.inc(len(find_ping_pongs(self.outcomes, cycle.observation.inventory, run.cooldown, now)))
        self.outcome_metrics.publish(self.outcomes, run.outcome_horizons)

    def _hysteresis(self, plan: Plan, now: float) -> bool:
        """True once the imbalance has stayed above the trigger for hold_time."""
        if plan.imbalance_before > self.config.policy.trigger:
            if self.state.above_trigger_since is None:
                self.state.above_trigger_since = now
                self.state.save()
            return now - self.state.above_trigger_since >= self.config.run.hold_time
        if self.state.above_trigger_since is not None:
            self.state.above_trigger_since = None
            self.state.save()
        # Under the trigger the planner may still offer high-water relief; in the loop it waits
        # like any balancing move, or a diurnal peak would move guests twice a day.
        return False

    def _hold_lock(self) -> bool:
        """The local lock, then the cluster lease (kept from cycle to cycle once taken)."""
        try:
            if not self.lock.held:
                self.lock.acquire()
                log.info("lock.acquired", path=str(self.lock.path))
            if self.lease is not None and not self.lease.held:
                self.lease.acquire()
        except ControllerBusy as exc:
            self.busy_reason = str(exc)
            self.metrics.lock_held.set(0)
            log.warning("lock.busy", reason=str(exc))
            return False
        self.busy_reason = None
        self.metrics.lock_held.set(1)
        return True

    def executor(self, rules: RuleSet, on_event: EventSink, window_bound: bool = False) -> Executor:
        # The cycle's rules (config, HA rules read from the cluster, cooldown holds), as in
        # `pvebalance apply`: the re-check before each migration must see every rule the plan saw.
        return Executor(
            self.client,
            rules,
            self.config.policy,
            self.config.apply,
            dry_run=self.dry_run,
            clock=self.clock,
            sleep=self.sleep,
            should_stop=self.stopping.is_set,
            on_event=on_event,
            on_moved=self.state.record_move,
            on_not_started=self.state.forget_move,
            may_start=(lambda: self._confirm_lease() or self._window_closed()) if window_bound else self._confirm_lease,
        )

    def _confirm_lease(self) -> str | None:
        """Asked before each migration: None while the cluster still shows our lease."""
        why = None if self.lease is None else self.lease.confirm()
        if why is not None:
            self.metrics.lock_held.set(0)
        return why

    def _window_closed(self) -> str | None:
        """Asked before each migration of a window-bound run: None while a window is open."""
        windows, now = self.config.run.windows, self.clock()
        self._publish_window(now)
        if windows is None or windows.inside(now):
            return None
        return f"the migration window closed (run.windows): running migrations were left to finish; {self._next_open(now)}"

    def _next_open(self, now: float) -> str:
        windows = self.config.run.windows
        at = windows.next_open(now) if windows is not None else None
        return "no window opens within two weeks" if at is None else (
            f"the next opens at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))}"
        )

    def _publish_window(self, now: float) -> None:
        windows = self.config.run.windows
        if windows is not None:
            self.metrics.publish_window(windows.inside(now), windows.next_open(now))
    def count(self, report: ApplyReport) -> None:
        for outcome in report.outcomes:
            self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        if outcome.result == "not_started" or self.dry_run:
            return
        if outcome.upid is not None:
            self.metrics.migrations.labels("started").inc()
        self.metrics.migrations.labels(outcome.result).inc()
        if outcome.result == "succeeded" and outcome.seconds:
            self.metrics.migration_duration.observe(outcome.seconds)

    def _publish(self, cycle: Cycle, now: float, drained: frozenset[str]) -> None:
        self.metrics.publish_plan(cycle.plan)
        self._publish_window(now)
        self.metrics.publish_drained(drained)
        history = cycle.observation.history
        if history is not None and history.data_age is not None:
            self.metrics.data_age.set(history.data_age)
        elif self.promql is not None:
            self.metrics.data_age.set(float("nan"))  # Prometheus down or empty: no age to report
        document = plan_document(cycle, self.config)
        self.current_plan = {**document, "generated_at": now, "actionable": cycle.actionable, "why_not": cycle.why_not}
        self.last_cycle = cycle
        self.metrics.publish_plan_id(document["plan_id"])
        self.operations.remember(Reviewed(cycle.plan, document["plan_id"]))

    def endpoints(self) -> Endpoints:
        """What `ControllerServer` serves for this controller."""
        return Endpoints(
            metrics=self.metrics.render,
            health=self.health,
            plan=lambda: self.current_plan,
            trigger=self.trigger,
            webhook_token=self.config.run.webhook_token,
            operations=self.operations,
            api=self.config.api,
            count_action=self.metrics.count_action,
        )

    # --- health ---------------------------------------------------------------------------

    def health(self) -> tuple[bool, Mapping[str, Any]]:
        now = self.clock()
        limit = 3 * self.config.run.interval
        reference = self.last_success if self.last_success is not None else self._started
        ok = not self.stopping.is_set() and now - reference <= limit
        holder = self.lease.holder if self.lease is not None else None  # read once: the renewer may drop it
        return ok, {
            "automation": self.automation,
            "last_cycle": None if self.last is None else {"result": self.last.result, "reason": self.last.reason, "at": self.last.at},
            "last_success": self.last_success,
            "lock_held": self.lock.held and (self.lease is None or self.lease.held),
            "lease": None if holder is None else holder.describe(),
            "lock_busy": self.busy_reason,
            "migration_window": None if self.config.run.windows is None else self.config.run.windows.describe(now),
        }


def _mandatory_prefix(plan: Plan) -> tuple[Move, ...]:
    """The leading mandatory moves: a prefix of a plan is feasible at every step, like the plan."""
    return tuple(itertools.takewhile(lambda move: move.kind is MoveKind.MANDATORY, plan.moves))
