"""What the operator API (/api/v1, docs/api.md) reads and does, without the HTTP framework.

Every action calls the code `plan` and `apply` call: a plan is `run_cycle` + `plan_document`,
applying a plan by id is `apply_reviewed`, and a person's migration is a one-move plan checked
by `planner.verify.check_moves` (every hard rule, the memory limit, the cooldown) and carried
out by the same Executor, which re-checks it against the live cluster right before it starts.
Migrations only start while this controller holds the local lock and the cluster lease, one
run at a time (the loop's or the API's), and never while automation is paused.

Refusals are `ApiRefusal`s with the HTTP status they mean; the server turns them into
`{"error": "..."}`.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from controller.advisor.metrics import AdvisorMetrics
from controller.config import WINDOWS, Config
from controller.cycle import cooldown_holds, cycle_rules, run_cycle
from controller.drain import drain_node, undrain_node
from controller.drainstate import DrainState
from controller.executor import ApplyReport, Executor, Outcome
from controller.observe import movable, observe
from controller.outcomes import record_report
from controller.promql import PromQL, Statistic
from controller.reviewed import Reviewed, apply_reviewed, plan_document
from controller.state import AUTOMATION_MODES
from planner.constraints import Constraints
from planner.model import Move, Plan
from planner.rules import ClosedRule, MaintenanceRule, RuleSet
from planner.verify import check_moves
from pveapi import values
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.settings import Secret

if TYPE_CHECKING:
    from controller.loop import Controller

log = structlog.get_logger("pvebalance.api")

KEPT_PLANS = 16  # plans that may be applied by id: the published one and recent what-ifs
KEPT_MIGRATIONS = 200  # migrations GET /api/v1/migrations still shows
REDACTED = "<redacted>"
# Builds the Executor for one run's moves, each move listed in GET /api/v1/migrations.
ExecutorFor = Callable[[RuleSet, Sequence[Move]], Executor]

# The request bodies as JSON schema, for /openapi.json; the functions below check them.
_NODES = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
PLAN_OVERRIDES_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "What-if overrides for this one plan; the running configuration is not changed",
    "properties": {
        "window": {"enum": list(WINDOWS), "description": "history window of the figures"},
        "statistic": {"type": "string", "description": "avg, quantile(0.95), mean_stddev(2), ..."},
        "trigger": {"type": "number", "minimum": 0, "maximum": 1, "description": "imbalance that starts balancing"},
        "max_moves": {"type": "integer", "minimum": 0, "description": "most moves in the plan"},
        "drain": {**_NODES, "description": "nodes to evacuate, as a drain would"},
        "leave_out": {**_NODES, "description": "nodes that receive nothing; their guests stay"},
    },
}
PLAN_OVERRIDES = set(PLAN_OVERRIDES_SCHEMA["properties"])
_MIGRATION = {"type": "object", "required": ["vmid", "target"], "additionalProperties": False,
              "properties": {"vmid": {"type": "integer", "minimum": values.MIN_VMID, "maximum": values.MAX_VMID},
                             "target": {"type": "string", "description": "node to move the guest to"}}}
MIGRATIONS_SCHEMA: dict[str, Any] = {
    "description": "One migration, or a batch carried out in order",
    "oneOf": [_MIGRATION, {"type": "object", "required": ["migrations"], "additionalProperties": False,
                           "properties": {"migrations": {"type": "array", "minItems": 1, "items": _MIGRATION}}}],
}
AUTOMATION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["mode"], "additionalProperties": False,
    "properties": {"mode": {"enum": list(AUTOMATION_MODES), "description": "kept across restarts"}},
}


class ApiRefusal(PvebalanceError):
    """A request the API refuses; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class MigrationLog:
    """Running and recent migrations, whoever asked for them, fed by the Executor's events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[int, int], dict[str, Any]] = OrderedDict()
        self._runs = itertools.count(1)

    def new_run(self, moves: Sequence[Move], requested_by: str, what: str) -> Callable[[Mapping[str, Any]], None]:
        """Lists `moves` as queued; returns the Executor event sink that keeps them current."""
        run = next(self._runs)
        with self._lock:
            for move in moves:
                self._entries[(run, move.vmid)] = {
                    "run": run, "what": what, "requested_by": requested_by, "vmid": move.vmid, "name": move.name,
                    "type": move.type, "source": move.source, "target": move.target, "state": "queued",
                    "task": None, "seconds": 0.0, "estimated_seconds": move.est_seconds, "progress": 0.0,
                    "outcome": None,
                }
            while len(self._entries) > KEPT_MIGRATIONS:
                self._entries.popitem(last=False)

        def on_event(event: Mapping[str, Any]) -> None:
            with self._lock:
                entry = self._entries.get((run, int(event["vmid"])))
                if entry is None:
                    return
                kind = str(event["event"])
                if kind == "started":
                    entry.update(state="running", task=event["upid"])
                elif kind == "running":
                    seconds = float(event["seconds"])
                    estimate = entry["estimated_seconds"]
                    entry.update(state="running", seconds=round(seconds, 1),
                                 progress=round(min(0.99, seconds / estimate), 2) if estimate else 0.0)
                else:
                    outcome = event["outcome"]
                    entry.update(state=kind, task=outcome.upid or entry["task"], seconds=round(outcome.seconds, 1),
                                 progress=1.0 if kind == "succeeded" else entry["progress"], outcome=outcome.detail)

        return on_event

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in reversed(self._entries.values())]


class Operations:
    """The API's reads and actions on one running controller."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.plans: OrderedDict[str, Reviewed] = OrderedDict()
        self._threads: list[threading.Thread] = []
        self._advisor_metrics: AdvisorMetrics | None = None  # on the controller's /metrics, from the first advice

    # --- reads ----------------------------------------------------------------------------

    def cluster(self) -> dict[str, Any]:
        cycle = self.controller.last_cycle
        if cycle is None:
            raise ApiRefusal(404, "no cycle yet: the first one has not finished")
        constraints = Constraints(cycle.model, cycle.rules, self.controller.config.policy)
        return {
            "generated_at": self.controller.current_plan["generated_at"] if self.controller.current_plan else None,
            "imbalance": cycle.plan.imbalance_before,
            "nodes": [dataclasses.asdict(n) for n in cycle.plan.nodes_before],
            "guests": [
                {"vmid": g.vmid, "name": g.name, "type": g.type, "node": g.node, "status": g.status,
                 "tags": sorted(g.tags), "pool": g.pool, "ha": g.ha_managed,
                 "source": cycle.model.guest_usage[g.vmid].source if g.vmid in cycle.model.guest_usage else None,
                 "rules": _rules_of(constraints, g.vmid)}
                for g in cycle.model.guests
            ],
            "problems": list(cycle.plan.problems),
            "warnings": list(cycle.warnings),
        }

    def plan(self) -> Mapping[str, Any]:
        if self.controller.current_plan is None:
            raise ApiRefusal(404, "no plan yet: the first cycle has not finished")
        return self.controller.current_plan

    def migrations(self) -> dict[str, Any]:
        entries = self.controller.migration_log.entries()
        return {"running": [e for e in entries if e["state"] in ("queued", "running")],
                "recent": [e for e in entries if e["state"] not in ("queued", "running")]}

    def outcomes(self) -> dict[str, Any]:
        """The newest applied plans' outcomes, oldest first (controller/outcomes.py)."""
        return {"outcomes": [o.to_dict() for o in self.controller.outcomes.outcomes]}

    def config(self) -> dict[str, Any]:
        answer: dict[str, Any] = redacted(self.controller.config)  # a dataclass redacts to a mapping
        return answer

    def advice(self) -> dict[str, Any]:
        config = self.controller.config
        if config.ai is None:
            raise ApiRefusal(404, "the AI advisor is off: add an ai: block to the config (docs/advisor.md)")
        from controller.advisor.advice import advise  # the providers' SDKs load only when asked
        from controller.advisor.report import advice_to_dict

        if self._advisor_metrics is None:
            self._advisor_metrics = AdvisorMetrics(self.controller.metrics.registry)
        return advice_to_dict(advise(config, self.controller.client, self._advisor_metrics))

    # --- actions --------------------------------------------------------------------------

    def remember(self, reviewed: Reviewed) -> None:
        self.plans[reviewed.plan_id] = reviewed
        self.plans.move_to_end(reviewed.plan_id)
        while len(self.plans) > KEPT_PLANS:
            self.plans.popitem(last=False)

    def make_plan(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """A fresh plan, with what-if overrides that leave the running configuration alone."""
        c = self.controller
        config = what_if(c.config, overrides)
        promql = PromQL(config.prometheus) if config.prometheus is not None else None
        cycle = run_cycle(c.client, promql, config, cooldown_holds(c.client, config, c.state))
        named = {n for key in ("drain", "leave_out") for n in values.name_list(overrides.get(key) or [], key)}  # checked by what_if
        unknown = sorted(named - {n.name for n in cycle.model.nodes})
        if unknown:
            raise ApiRefusal(400, f"plan overrides name unknown node(s) {', '.join(unknown)} "
                                  f"(nodes: {', '.join(n.name for n in cycle.model.nodes)})")
        document = {**plan_document(cycle, config), "actionable": cycle.actionable, "why_not": cycle.why_not,
                    "overrides": dict(overrides)}
        self.remember(Reviewed(cycle.plan, document["plan_id"]))
        return document

    def apply_plan(self, plan_id: str, who: str) -> dict[str, Any]:
        """Carry out the plan `plan_id` as `apply --plan` does; 409 when it no longer holds."""
        reviewed = self.plans.get(plan_id)
        if reviewed is None:
            raise ApiRefusal(404, f"no plan {plan_id} here: GET /api/v1/plan or POST /api/v1/plan shows the plans that can be applied")
        if not reviewed.plan.moves:
            raise ApiRefusal(409, f"plan {plan_id} has no moves: nothing to do")
        self._refuse_if_paused(reviewed.plan.moves, who, f"plan {plan_id}")
        c = self.controller
        hold = cooldown_holds(c.client, c.config, c.state)
        observation = observe(c.client, c.promql)
        problems = check_moves(observation.model, cycle_rules(c.config, observation, hold), c.config.policy, reviewed.plan.moves)
        if problems:
            raise ApiRefusal(409, f"plan {plan_id} no longer holds: {'; '.join(problems)}; make a fresh plan")

        def carry_out(executor: ExecutorFor) -> ApplyReport:
            report = apply_reviewed(reviewed, c.client, c.promql, c.config, hold,
                                    lambda rules: executor(rules, reviewed.plan.moves), observation)
            if not c.dry_run:  # its outcome is measured like the loop's and `apply`'s (controller/outcomes.py)
                record_report(c.outcomes, reviewed.plan, report, c.clock())
            return report

        return {**self._start(reviewed.plan.moves, who, f"plan {plan_id}", carry_out), "moves": len(reviewed.plan.moves)}

    def migrate(self, body: Any, who: str) -> dict[str, Any]:
        """A person's migrations: each checked exactly like a planned move, in the order given."""
        asked = _requested(body)
        c = self.controller
        hold = cooldown_holds(c.client, c.config, c.state)
        observation = observe(c.client, c.promql)
        model = observation.model
        guests = {g.vmid: g for g in model.guests}
        moves = []
        for vmid, target in asked:
            guest = guests.get(vmid)
            if guest is None:
                raise ApiRefusal(404, f"guest {vmid} is not in the cluster")
            usage = model.guest_usage[vmid]
            moves.append(Move(vmid, guest.name, guest.type, guest.node, target,
                              f"asked for by {who} through the API", usage.mem_bytes, usage.cpu_cores, 0.0,
                              usage_source=usage.source))
        self._refuse_if_paused(moves, who, "request")
        rules = cycle_rules(c.config, observation, hold)
        problems = check_moves(model, rules, c.config.policy, moves)  # hard rules, memory, cooldown
        if problems:
            raise ApiRefusal(409, "refused: " + "; ".join(problems))
        overrides = soft_overrides(Constraints(model, rules, c.config.policy), moves)
        blocked, _ = movable(c.client, [(guests[m.vmid], m.target) for m in moves], c.config.policy.allow_local_disks)
        if blocked:
            raise ApiRefusal(409, "refused by the API's migrate check: " + "; ".join(f"{v}: {r}" for v, r in blocked.items()))
        plan = Plan(tuple(moves), (), (), 0.0, 0.0)
        started = self._start(plan.moves, who, "request", lambda executor: executor(rules, plan.moves).apply(plan, model))
        return {**started, "moves": len(plan.moves), "overrides": overrides}

    def set_automation(self, body: Any) -> dict[str, Any]:
        mode = body.get("mode") if isinstance(body, Mapping) else None
        if mode not in AUTOMATION_MODES:
            raise ApiRefusal(400, f"expected {{\"mode\": one of {', '.join(AUTOMATION_MODES)}}}, got {body!r}")
        self.controller.set_automation(mode)
        return {"automation": mode}

    def drain(self, node: str, who: str, undrain: bool) -> dict[str, Any]:
        """`pvebalance drain|undrain NODE` through the API: the same `drain_node`/`undrain_node`,
        under the lock and the lease, one migration run at a time; 404/409 before anything starts."""
        c = self.controller
        names = [n.name for n in c.client.resources().nodes]
        if node not in names:
            raise ApiRefusal(404, f"no node {node!r} in the cluster (nodes: {', '.join(names)})")
        drained = DrainState.load(c.config.run.state_file).drained
        if undrain and node not in drained:
            raise ApiRefusal(409, f"node {node!r} is not drained (drained: {', '.join(sorted(drained)) or 'none'})")
        verb = "undrain" if undrain else "drain"
        operation = undrain_node if undrain else drain_node

        def carry_out(executor: ExecutorFor) -> ApplyReport | None:
            result = operation(node, c.config, c.client, c.promql, lambda rules, plan: executor(rules, plan.moves),
                               dry_run=c.dry_run, at=c.clock())
            c.metrics.publish_drained(DrainState.load(c.config.run.state_file).drained)
            log.info("api.drain_ended", who=who, node=node, action=verb, staying=list(result.lines))
            return result.report

        return {**self._start((), who, f"{verb} {node}", carry_out), "node": node}

    def _refuse_if_paused(self, moves: Sequence[Move], who: str, what: str) -> None:
        """Paused comes before any other reason (the rest would not matter while it holds); the
        moves are shown as not started, with it, as any refused run's are."""
        why = self.controller.paused
        if why is not None:
            _not_started(self.controller.migration_log.new_run(moves, who, what), moves, why)
            raise ApiRefusal(409, why)

    def _start(self, moves: Sequence[Move], who: str, what: str,
               carry_out: Callable[[ExecutorFor], ApplyReport | None]) -> dict[str, Any]:
        """Run `carry_out` in the background holding the lock and the lease; 409 when it may not.
        `moves` are the run's moves when known before it starts (a drain plans its own)."""
        c = self.controller
        known = c.migration_log.new_run(moves, who, what) if moves else None  # shown as queued at once
        why_not: str | None = "another migration run is in progress; see GET /api/v1/migrations"
        if c.acting.acquire(blocking=False):
            try:
                why_not = c.may_act()
            except BaseException:
                c.acting.release()
                raise
            if why_not is not None:
                c.acting.release()
        if why_not is not None:
            if known is not None:
                _not_started(known, moves, why_not)
            raise ApiRefusal(409, why_not)

        def executor(rules: RuleSet, planned: Sequence[Move]) -> Executor:
            return c.executor(rules, known or c.migration_log.new_run(planned, who, what))

        def run() -> None:
            try:
                report = carry_out(executor)
                if report is not None:
                    c.count(report)
                log.info("api.run_ended", who=who, what=what, summary=report.summary if report else "nothing to move")
            except PvebalanceError as exc:
                log.warning("api.run_failed", who=who, what=what, error=str(exc))
            finally:
                c.done_acting()
                c.acting.release()

        thread = threading.Thread(target=run, name=f"pvebalance-api-{what}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return {"accepted": what, "progress": "/api/v1/migrations"}

    def wait(self, timeout: float) -> None:
        """Let started runs end (on shutdown: running migrations are watched to their end)."""
        for thread in self._threads:
            thread.join(timeout)


def _not_started(on_event: Callable[[Mapping[str, Any]], None], moves: Sequence[Move], why: str) -> None:
    """Shows a refused run's moves in GET /api/v1/migrations as not started, with the reason."""
    for move in moves:
        on_event({"event": "not_started", "vmid": move.vmid, "move": move, "outcome": Outcome(move, "not_started", why)})


def _requested(body: Any) -> list[tuple[int, str]]:
    """[(vmid, target)] from {"vmid", "target"} or {"migrations": [...]}; 400 naming the problem."""
    items = body.get("migrations") if isinstance(body, Mapping) and "migrations" in body else [body]
    if not isinstance(items, list) or not items:
        raise ApiRefusal(400, 'expected {"vmid": 101, "target": "pve3"} or {"migrations": [{"vmid": ..., "target": ...}, ...]}')
    asked = []
    for i, item in enumerate(items):
        where = f"migrations[{i}]"
        if not isinstance(item, Mapping) or set(item) != {"vmid", "target"}:
            raise ApiRefusal(400, f'{where}: expected {{"vmid": 101, "target": "pve3"}}, got {item!r}')
        try:
            (vmid,) = values.vmid_list(item["vmid"], f"{where}.vmid")
            (target,) = values.name_list(item["target"], f"{where}.target")
        except (ConfigError, ValueError) as exc:
            raise ApiRefusal(400, str(exc)) from None
        asked.append((vmid, target))
    if len({v for v, _ in asked}) != len(asked):
        raise ApiRefusal(400, "a guest may be asked to move only once per request")
    return asked


def what_if(config: Config, overrides: Any) -> Config:
    """`config` with POST /api/v1/plan's overrides; 400 naming a bad one. The running
    configuration is not touched: this is a copy for one plan."""
    if not isinstance(overrides, Mapping):
        raise ApiRefusal(400, f"expected a JSON object of overrides ({', '.join(sorted(PLAN_OVERRIDES))}), or none")
    try:
        values.reject_unknown(overrides, PLAN_OVERRIDES, "plan overrides")
        prometheus = config.prometheus
        if "window" in overrides or "statistic" in overrides:
            if prometheus is None:
                raise ConfigError("plan overrides: window and statistic need a prometheus block in the config")
            window = overrides.get("window", prometheus.window)
            if window not in WINDOWS:
                raise ConfigError(f"plan overrides.window: must be one of {', '.join(WINDOWS)}, got {window!r}")
            statistic = Statistic.parse(overrides["statistic"], "plan overrides.statistic") if "statistic" in overrides else prometheus.statistic
            prometheus = replace(prometheus, window=window, statistic=statistic)
        policy = config.policy.overridden({k: overrides[k] for k in ("trigger", "max_moves") if k in overrides},
                                          "plan overrides")
        rules = config.rules
        if overrides.get("drain"):
            drain = values.name_list(overrides["drain"], "plan overrides.drain")
            rules = rules.merge(RuleSet(maintenance=(MaintenanceRule(frozenset(drain), "what-if drain"),)))
        if overrides.get("leave_out"):
            leave_out = values.name_list(overrides["leave_out"], "plan overrides.leave_out")
            rules = rules.merge(RuleSet(closed=(ClosedRule(frozenset(leave_out), "what-if leave_out"),)))
    except ConfigError as exc:
        raise ApiRefusal(400, str(exc)) from None
    return replace(config, prometheus=prometheus, policy=policy, rules=rules)


def soft_overrides(constraints: Constraints, moves: Sequence[Move]) -> list[str]:
    """The soft rules a person's moves override, one line each, in order: a plan never makes
    them worse, a person may (hard rules are check_moves' to refuse)."""
    lines = []
    for move in moves:
        vmid, target, where = move.vmid, move.target, constraints.where[move.vmid]
        at = f"{vmid} -> {target} overrides"
        lines += [f"{at} {g.label}: {target} already runs one of its guests"
                  for g in constraints.apart_of.get(vmid, ()) if not g.strict and g.nodes[target] > 0]
        lines += [f"{at} {g.label}: it leaves its group" for g in constraints.together_of.get(vmid, ())
                  if not g.strict and g.nodes[target] < g.nodes[where]]
        preferred = constraints.preferred.get(vmid)
        if preferred is not None and where in preferred and target not in preferred:
            lines.append(f"{at} {constraints.preferred_by[vmid]}: {target} is not among {', '.join(sorted(preferred))}")
        constraints.moved(vmid, target)
    return lines


def _rules_of(constraints: Constraints, vmid: int) -> list[str]:
    """Every rule that applies to the guest, as the planner names it."""
    names = [g.label for g in (*constraints.apart_of.get(vmid, ()), *constraints.together_of.get(vmid, ()))]
    for labels in (constraints.allowed_by, constraints.preferred_by, constraints.skip_reason):
        if vmid in labels:
            names.append(labels[vmid])
    return names


def redacted(value: Any) -> Any:
    """A config value as JSON, every Secret replaced by REDACTED."""
    if isinstance(value, Secret):
        return REDACTED
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Extra HTTP headers (prometheus.headers) often carry credentials: their values too.
        return {f.name: {k: REDACTED for k in getattr(value, f.name)} if f.name == "headers" else redacted(getattr(value, f.name))
                for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): redacted(v) for k, v in value.items()}
    if isinstance(value, (frozenset, set)):
        return sorted(redacted(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value
