"""Did the plan do what it said? Predicted against observed outcome of every applied plan.

After a plan is applied (`pvebalance apply`, the loop, the operator API: each calls
`record_applied`), what it predicted is kept: the online nodes' loads, the CRS imbalance and
each move's gain. At each horizon after it (5 min, 1 h, 24 h by default: `run.outcome_horizons`)
the same figures are measured from Prometheus at that instant, from the nodes' own series,
and published; the gap is the plan's prediction error. A guest that is back on the node it was
moved off while still within its cooldown is a ping-pong, whoever moved it back.

The records live in their own file beside the state file (`<state file>.outcomes.json`, the
newest `run.outcomes_kept`), replaced atomically like it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from controller.executor import ApplyReport
from controller.forecast import duration_text
from controller.jsonfile import read_json, write_json
from controller.promql import PrometheusError, PromQL
from planner.model import Move, Plan
from planner.placement import imbalance
from planner.policy import Policy
from pveapi.errors import ConfigError
from pveapi.inventory import Inventory

log = structlog.get_logger("pvebalance.outcomes")

# A node's observed figure is its mean over this much time before the horizon: one sample
# would be noise, a long window would still hold the hour before the plan at the 5 min mark.
OBSERVE_WINDOW = "5m"
_NODES = 'id=~"node/.+"'
NODE_QUERIES = {
    "cpu": f'max by (id) (avg_over_time(pve_cpu_usage_ratio{{{_NODES}}}[{OBSERVE_WINDOW}]))',
    "mem": (
        f'max by (id) (avg_over_time(pve_memory_usage_bytes{{{_NODES}}}[{OBSERVE_WINDOW}])) / on(id) '
        f'max by (id) (max_over_time(pve_memory_size_bytes{{{_NODES}}}[{OBSERVE_WINDOW}]))'
    ),
}


@dataclass(frozen=True)
class MovedGuest:
    vmid: int
    name: str
    source: str
    target: str
    gain: float  # the imbalance reduction the plan predicted for this step


@dataclass(frozen=True)
class Observed:
    imbalance: float
    loads: Mapping[str, float]  # node -> load, as the planner weighs CPU and memory


@dataclass
class PlanOutcome:
    applied_at: float
    predicted_imbalance: float
    imbalance_before: float
    predicted_loads: dict[str, float]  # online nodes only: the ones the imbalance counts
    moves: list[MovedGuest]
    observed: dict[str, Observed] = field(default_factory=dict)  # horizon label -> figures
    ping_pongs: list[int] = field(default_factory=list)  # vmids counted as back on their source

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanOutcome:
        return cls(
            applied_at=float(data["applied_at"]),
            predicted_imbalance=float(data["predicted_imbalance"]),
            imbalance_before=float(data["imbalance_before"]),
            predicted_loads={str(k): float(v) for k, v in dict(data["predicted_loads"]).items()},
            moves=[MovedGuest(int(m["vmid"]), str(m["name"]), str(m["source"]), str(m["target"]), float(m["gain"]))
                   for m in data["moves"]],
            observed={str(h): Observed(float(o["imbalance"]), {str(k): float(v) for k, v in dict(o["loads"]).items()})
                      for h, o in dict(data.get("observed", {})).items()},
            ping_pongs=[int(v) for v in data.get("ping_pongs", [])],
        )


def outcomes_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".outcomes.json")


@dataclass
class OutcomeLog:
    """The newest `kept` outcomes, oldest first, in their own file beside the state file."""

    path: Path
    kept: int = 20
    outcomes: list[PlanOutcome] = field(default_factory=list)
    writable: bool = True  # False for dry runs: they change nothing on disk

    @classmethod
    def load(cls, state_file: Path, kept: int = 20, writable: bool = True) -> OutcomeLog:
        path = outcomes_path(state_file)
        data = read_json(path, "outcome file", "past outcomes are then lost")
        if data is None:
            return cls(path, kept, writable=writable)
        try:
            return cls(path, kept, [PlanOutcome.from_dict(o) for o in data["outcomes"]][-kept:], writable)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"outcome file {path}: not a pvebalance outcome file; fix or remove it") from None

    def save(self) -> None:
        if not self.writable:
            return
        write_json(self.path, {"version": 1, "outcomes": [o.to_dict() for o in self.outcomes[-self.kept:]]},
                   "outcome file")

    def add(self, outcome: PlanOutcome) -> None:
        self.outcomes = [*self.outcomes, outcome][-self.kept:]
        self.save()


def record_applied(log_file: OutcomeLog, plan: Plan, moved: Sequence[Move], at: float) -> PlanOutcome | None:
    """Keep what an applied plan predicted; `moved` are the moves that ended on their target.

    Nothing is kept when nothing moved (a dry run, every move dropped): there is no outcome to check.
    """
    if not moved:
        return None
    outcome = PlanOutcome(
        applied_at=at,
        predicted_imbalance=plan.imbalance_after,
        imbalance_before=plan.imbalance_before,
        predicted_loads={n.name: n.load for n in plan.nodes_after if n.state == "online"},
        moves=[MovedGuest(m.vmid, m.name, m.source, m.target, m.gain) for m in moved],
    )
    log_file.add(outcome)
    log.info("outcome.recorded", applied_at=at, predicted_imbalance=outcome.predicted_imbalance, moves=len(moved))
    return outcome


def record_report(log_file: OutcomeLog, plan: Plan, report: ApplyReport, at: float) -> PlanOutcome | None:
    """`record_applied` for an executor's report: the one call after any apply (CLI, loop, API)."""
    return record_applied(log_file, plan, [o.move for o in report.outcomes if o.result == "succeeded"], at)


def observe_node_loads(promql: PromQL, at: float, policy: Policy) -> dict[str, float]:
    """node -> load at `at`, measured from the nodes' own series (two queries for the cluster)."""
    cpu = promql.query(NODE_QUERIES["cpu"], at)
    mem = promql.query(NODE_QUERIES["mem"], at)
    total = policy.cpu_weight + policy.memory_weight
    return {
        resource_id.removeprefix("node/"): (policy.cpu_weight * cpu[resource_id] + policy.memory_weight * mem[resource_id]) / total
        for resource_id in cpu.keys() & mem.keys()
    }


def observe_due(
    log_file: OutcomeLog, promql: PromQL, horizons: Iterable[float], policy: Policy, now: float
) -> list[tuple[PlanOutcome, str]]:
    """Measure every horizon that has passed and is not measured yet; returns what was measured.

    A horizon Prometheus has no figures for yet (scrape lag, an outage) is asked again next time.
    """
    measured: list[tuple[PlanOutcome, str]] = []
    for outcome in log_file.outcomes:
        for seconds in horizons:
            label = duration_text(seconds)
            due = outcome.applied_at + seconds
            if label in outcome.observed or due > now:
                continue
            try:
                loads = observe_node_loads(promql, due, policy)
            except PrometheusError as exc:
                log.warning("outcome.unobservable", horizon=label, applied_at=outcome.applied_at, error=str(exc))
                return measured  # the server is down: the other horizons will fail the same way
            nodes = {n: loads[n] for n in outcome.predicted_loads if n in loads}
            if len(nodes) < len(outcome.predicted_loads):
                continue  # not every node has figures at that instant yet
            outcome.observed[label] = Observed(imbalance(list(nodes.values())), nodes)
            measured.append((outcome, label))
            log.info("outcome.observed", horizon=label, applied_at=outcome.applied_at,
                     predicted=outcome.predicted_imbalance, observed=outcome.observed[label].imbalance)
    if measured:
        log_file.save()
    return measured


def find_ping_pongs(log_file: OutcomeLog, inventory: Inventory, cooldown: float, now: float) -> list[MovedGuest]:
    """Moved guests that are back on their source node within their cooldown, each counted once."""
    where = {g.vmid: g.node for g in inventory.guests}
    found: list[MovedGuest] = []
    for outcome in log_file.outcomes:
        if now - outcome.applied_at >= cooldown:
            continue
        for move in outcome.moves:
            if move.vmid not in outcome.ping_pongs and where.get(move.vmid) == move.source:
                outcome.ping_pongs.append(move.vmid)
                found.append(move)
                log.warning("outcome.ping_pong", vmid=move.vmid, name=move.name, node=move.source,
                            moved_at=outcome.applied_at, seconds_ago=round(now - outcome.applied_at))
    if found:
        log_file.save()
    return found


class OutcomeMetrics:
    """The outcome series (docs/metrics.md, "Plan outcomes"), on the controller's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.predicted = Gauge(
            "pvebalance_plan_predicted_imbalance_ratio", "Imbalance the newest applied plan predicted", registry=r
        )
        self.applied_at = Gauge(
            "pvebalance_plan_applied_timestamp_seconds", "When the newest applied plan ended", registry=r
        )
        self.observed = Gauge(
            "pvebalance_plan_observed_imbalance_ratio",
            "Imbalance measured at each horizon after the newest plan that reached it", ["horizon"], registry=r,
        )
        self.error = Gauge(
            "pvebalance_plan_prediction_error_ratio",
            "Observed minus predicted imbalance of the newest plan that reached each horizon", ["horizon"], registry=r,
        )
        self.ping_pongs = Counter(
            "pvebalance_plan_ping_pongs", "Moved guests found back on their source node within their cooldown", registry=r
        )

    def publish(self, log_file: OutcomeLog, horizons: Iterable[float]) -> None:
        if not log_file.outcomes:
            return
        newest = log_file.outcomes[-1]
        self.predicted.set(newest.predicted_imbalance)
        self.applied_at.set(newest.applied_at)
        for seconds in horizons:
            label = duration_text(seconds)
            reached = [o for o in log_file.outcomes if label in o.observed]
            if reached:
                seen = reached[-1].observed[label]
                self.observed.labels(label).set(seen.imbalance)
                self.error.labels(label).set(seen.imbalance - reached[-1].predicted_imbalance)
