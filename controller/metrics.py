"""The controller's own metrics (docs/metrics.md, "Controller"), in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from controller.state import AUTOMATION_MODES
from planner.model import MoveKind, Plan

CYCLE_RESULTS = ("planned", "applied", "skipped", "failed")
MIGRATION_RESULTS = ("started", "succeeded", "failed", "dropped")


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycles = Counter("pvebalance_cycles", "Cycles run, by result", ["result"], registry=r)
        self.last_success = Gauge(
            "pvebalance_last_success_timestamp_seconds", "End of the last successful cycle", registry=r
        )
        self.imbalance = Gauge("pvebalance_imbalance", "CRS imbalance now and after the current plan", ["when"], registry=r)
        self.plan_moves = Gauge("pvebalance_plan_moves", "Moves in the current plan", ["kind"], registry=r)
        self.move_info = Gauge(
            "pvebalance_plan_move_info",
            "One series per move of the current plan",
            ["vmid", "name", "type", "source", "target", "reason", "step"],
            registry=r,
        )
        self.migrations = Counter("pvebalance_migrations", "Migrations, by result", ["result"], registry=r)
        self.migration_duration = Histogram(
            "pvebalance_migration_duration_seconds",
            "Migration durations",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=r,
        )
        self.data_age = Gauge("pvebalance_data_age_seconds", "Age of the newest Prometheus sample the plan used", registry=r)
        self.node_load = Gauge("pvebalance_node_load_ratio", "Weighted load per node", ["node", "when"], registry=r)
        self.lock_held = Gauge(
            "pvebalance_lock_held", "1 when this instance holds the one-controller lock and may migrate", registry=r
        )
        self.node_drained = Gauge(
            "pvebalance_node_drained", "1 for each node drained with `pvebalance drain` (it receives no guests)",
            ["node"], registry=r,
        )
        self.window_open = Gauge(
            "pvebalance_migration_window_open", "1 inside a migration window (run.windows), 0 outside", registry=r
        )
        self.window_next_open = Gauge(
            "pvebalance_migration_window_next_open_timestamp_seconds",
            "When the next migration window opens (NaN inside one, or none within two weeks)", registry=r,
        )
        self.plan_info = Gauge("pvebalance_plan_info", "1 for the id of the current plan", ["plan_id"], registry=r)
        self.automation = Gauge(
            "pvebalance_automation_mode", "1 for the automation mode in force (manual, automatic, paused)", ["mode"], registry=r
        )
        self.api_actions = Counter(
            "pvebalance_api_actions", "Operator API requests, by action and result (ok, refused, error, unauthorized, forbidden)",
            ["action", "result"], registry=r,
        )
        # Every label value exists from the start, so rate() and alerts see zeros, not gaps.
        for result in CYCLE_RESULTS:
            self.cycles.labels(result)
        for result in MIGRATION_RESULTS:
            self.migrations.labels(result)

    def publish_plan(self, plan: Plan) -> None:
        self.imbalance.labels("now").set(plan.imbalance_before)
        self.imbalance.labels("predicted").set(plan.imbalance_after)
        for kind in MoveKind:
            self.plan_moves.labels(kind.value).set(sum(1 for m in plan.moves if m.kind is kind))
        self.move_info.clear()
        for step, move in enumerate(plan.moves, start=1):
            self.move_info.labels(
                str(move.vmid), move.name, move.type, move.source, move.target, move.reason, str(step)
            ).set(1)
        self.node_load.clear()
        for when, loads in (("now", plan.nodes_before), ("predicted", plan.nodes_after)):
            for node in loads:
                self.node_load.labels(node.name, when).set(node.load)

    def publish_drained(self, nodes: frozenset[str]) -> None:
        self.node_drained.clear()
        for node in sorted(nodes):
            self.node_drained.labels(node).set(1)

    def publish_window(self, inside: bool, next_open: float | None) -> None:
        self.window_open.set(1 if inside else 0)
        self.window_next_open.set(float("nan") if next_open is None else next_open)

    def publish_plan_id(self, plan_id: str) -> None:
        self.plan_info.clear()
        self.plan_info.labels(plan_id).set(1)

    def publish_automation(self, mode: str) -> None:
        for each in AUTOMATION_MODES:
            self.automation.labels(each).set(1 if each == mode else 0)

    def count_action(self, action: str, result: str) -> None:
        self.api_actions.labels(action, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
