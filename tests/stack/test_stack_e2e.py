"""The whole loop, for real: simulator (demo scenario) -> exporter -> Prometheus (backfilled
history, then live scrapes, the product's rules) -> controller -> simulator, plus the same
plan from VictoriaMetrics.

One stack serves the module; the fixture runs its story in order:
1. two hours of history backfilled through the exporter's collector, then live scrapes;
2. the product's alert rules with durations shortened to seconds (the full durations are
   covered by promtool unit tests) and the CPU threshold set between the two busiest nodes,
   so exactly one node is overloaded;
3. `pvebalance run` in manual mode, scraped by Prometheus and reached by Alertmanager
   (Debian's, with the product's routes) through its webhook;
4. the same history copied into VictoriaMetrics, and `pvebalance plan` against both;
5. `pvebalance run` in automatic mode until its first wave of migrations is done.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from demoloop.processes import free_port, http_ok, wait_until
from demoloop.stack import ROOT, LocalStack
from pveapi.errors import PvebalanceError
from tests.stack.dashboards import panel_queries

RULES = ROOT / "prometheus" / "rules"
SHORT_FOR = "4s"
HISTORY_HOURS = 2


@dataclass
class Story:
    stack: LocalStack
    started: float  # before the backfilled history
    overloaded: str  # the node over the CPU threshold
    coolest: str
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> plan JSON


def _fast_rules(directory: Path, cpu_threshold: float) -> list[Path]:
    """The product's rule files with every `for:` shortened and the CPU threshold replaced."""
    directory.mkdir(exist_ok=True)
    out = []
    for path in sorted(RULES.glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = SHORT_FOR
                if rule.get("record") == "pvebalance:threshold_node_cpu:ratio":
                    rule["expr"] = f"vector({cpu_threshold:.4f})"
        target = directory / path.name
        target.write_text(yaml.safe_dump(rules, sort_keys=False))
        out.append(target)
    return out


def _range(stack: LocalStack, expr: str, start: float, step: float = 2) -> dict[str, Any]:
    """A range query from `start` to now; the step is the scrape interval, so short-lived series show."""
    params: dict[str, str | float] = {"query": expr, "start": start, "end": time.time(), "step": step}
    answer: dict[str, Any] = requests.get(f"{stack.prometheus_url}/api/v1/query_range", timeout=60, params=params).json()
    return answer


def _copy_history_to_victoria(stack: LocalStack, victoria: str) -> int:
    """Every raw pve_* sample Prometheus holds, imported into VictoriaMetrics; the sample count."""
    answer = requests.get(f"{stack.prometheus_url}/api/v1/query", timeout=60,
                          params={"query": f'{{__name__=~"pve_.+"}}[{HISTORY_HOURS + 1}h]'}).json()
    lines, samples = [], 0
    for series in answer["data"]["result"]:
        values = [float(v) for _, v in series["values"]]
        lines.append(json.dumps({"metric": series["metric"], "values": values,
                                 "timestamps": [int(float(t) * 1000) for t, _ in series["values"]]}))
        samples += len(values)
    requests.post(f"{victoria}/api/v1/import", data="\n".join(lines), timeout=120).raise_for_status()
    requests.get(f"{victoria}/internal/force_flush", timeout=60).raise_for_status()
    return samples


def _plan(stack: LocalStack, config: Path | None = None) -> dict[str, Any]:
    done = stack.pvebalance("plan", "--output", "json", capture=True, config=config)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    if shutil.which("victoria-metrics") is None:
        pytest.fail("victoria-metrics is not on the PATH: run scripts/ensure-stack-tools.sh")
    workdir = tmp_path_factory.mktemp("stack")
    stack = LocalStack(workdir, "demo", time_scale=60)
    try:
        stack.start_simulator()
        started = time.time() - HISTORY_HOURS * 3600
        stack.backfill(HISTORY_HOURS, 120)
        stack.start_exporter()
        rules = _fast_rules(workdir / "rules", cpu_threshold=1.0)  # nothing overloaded until we say so
        stack.start_alertmanager()
        stack.start_prometheus(interval="2s", rule_files=rules, scrape_controller=True)
        cpu = {r["metric"]["node"]: float(r["value"][1]) for r in stack.query("pvebalance:node_cpu:ratio")}
        ranked = sorted(cpu, key=cpu.__getitem__, reverse=True)
        _fast_rules(workdir / "rules", cpu_threshold=(cpu[ranked[0]] + cpu[ranked[1]]) / 2)
        stack.reload_prometheus()
        wait_until(lambda: bool(stack.query('ALERTS{alertname="PveNodeCpuHigh",alertstate="firing"}')),
                   "PveNodeCpuHigh firing", 60)
        result = Story(stack, started, overloaded=ranked[0], coolest=ranked[-1])

        # The loop in manual mode first: it plans and publishes, and Alertmanager reaches its webhook.
        stack.start_controller(automation="manual", interval="10s")
        try:
            wait_until(lambda: any(e["event"] == "webhook.received" for e in _webhook_events(stack)),
                       "Alertmanager calling the controller's webhook", 240)
        except PvebalanceError as exc:
            pytest.fail(f"{exc}; Alertmanager's log:\n{stack.children.log_tail('alertmanager', 30)}")

        victoria_port = free_port()
        victoria = f"http://127.0.0.1:{victoria_port}"
        stack.children.start("victoria-metrics", [
            str(shutil.which("victoria-metrics")), f"-storageDataPath={workdir / 'victoria'}",
            f"-httpListenAddr=127.0.0.1:{victoria_port}", "-retentionPeriod=1y"])
        wait_until(lambda: http_ok(f"{victoria}/health"), "victoria-metrics", 60)
        assert _copy_history_to_victoria(stack, victoria) > 0
        result.plans["prometheus"] = _plan(stack)
        result.plans["victoria-metrics"] = _plan(
            stack, stack.write_controller_config("controller-victoria.yml", prometheus_url=victoria))

        # Then in automatic mode until its first wave of migrations is done.
        stack.children.stop("controller")
        stack.start_controller(automation="automatic", interval="10s", hold_time=0)
        wait_until(lambda: bool(stack.query('pvebalance_migrations_total{result="succeeded"} > 0'))
                   and not _tasks_running(stack), "the controller's first migrations", 240)
        # Stop the loop (it lets running migrations finish) so placement holds still for the checks.
        stack.children.stop("controller")
        wait_until(lambda: not _tasks_running(stack), "migrations to finish", 120)
        time.sleep(6)  # a few scrapes of the final placement
        yield result
    finally:
        stack.close()


def _webhook_events(stack: LocalStack) -> list[dict[str, Any]]:
    """The controller's webhook.* log events (its log is JSON, one event a line)."""
    lines = stack.children.log_path("controller").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in events if str(e.get("event", "")).startswith("webhook.")]


def _tasks_running(stack: LocalStack) -> bool:
    state = requests.get(f"{stack.sim.admin_url}/state", verify=str(stack.sim.cert_path), timeout=10).json()
    return bool(state["tasks_running"])


def _sim(stack: LocalStack, path: str) -> Any:
    return requests.get(f"{stack.sim.admin_url}{path}", verify=str(stack.sim.cert_path), timeout=10).json()


def _value(stack: LocalStack, expr: str) -> float:
    result = stack.query(expr)
    assert len(result) == 1, (expr, result)
    return float(result[0]["value"][1])


def test_prometheus_scrapes_the_exporter_over_the_simulator(story: Story) -> None:
    stack = story.stack
    assert _value(stack, 'up{job="pvebalance-exporter"}') == 1
    state = _sim(stack, "/state")
    assert _value(stack, "count(pve_node_info)") == len(state["nodes"])
    assert _value(stack, "count(pve_guest_info)") == len(state["guests"])
    running: dict[str, int] = {}
    for guest in state["guests"]:
        if guest["status"] == "running":
            running[guest["node"]] = running.get(guest["node"], 0) + 1
    counted = {r["metric"]["node"]: int(float(r["value"][1])) for r in stack.query("pvebalance:node_running_guests:count")}
    assert counted == running


def test_backfilled_history_and_live_scrapes_are_one_series(story: Story) -> None:
    stack = story.stack
    assert _value(stack, 'count(pve_cpu_usage_ratio{id="node/pve1"})') == 1
    samples = _value(stack, f'count_over_time(pve_cpu_usage_ratio{{id="node/pve1"}}[{HISTORY_HOURS}h])')
    assert samples > HISTORY_HOURS * 3600 / 120  # every backfilled step plus the live scrapes


def test_an_alert_fires_for_the_overloaded_node_only(story: Story) -> None:
    answer = _range(story.stack, 'ALERTS{alertname="PveNodeCpuHigh",alertstate="firing"}', story.started)
    nodes = {series["metric"]["node"] for series in answer["data"]["result"]}
    assert story.overloaded in nodes and story.coolest not in nodes


def test_the_controller_plans_from_promql_averages_on_prometheus_and_victoria_metrics(story: Story) -> None:
    prom, victoria = story.plans["prometheus"], story.plans["victoria-metrics"]
    running = sum(1 for g in _sim(story.stack, "/state")["guests"] if g["status"] == "running")
    for plan in (prom, victoria):
        assert plan["sources"].get("prometheus", 0) >= running - 1, plan["sources"]
        assert plan["moves"] and plan["imbalance"]["after"] < plan["imbalance"]["before"]
    # Same history, same answer: the nodes' averaged load agrees and so does the predicted
    # balance. Which guest of an anti-affinity group moves, or which of two similar guests goes
    # first, may differ: the planner's search sees averages a few thousandths apart.
    before = {n["name"]: n["before"]["load"] for n in prom["nodes"]}
    for node in victoria["nodes"]:
        assert node["before"]["load"] == pytest.approx(before[node["name"]], abs=0.03), node["name"]
    assert victoria["imbalance"]["after"] == pytest.approx(prom["imbalance"]["after"], abs=0.03)


def test_applied_moves_are_visible_in_prometheus(story: Story) -> None:
    stack = story.stack
    kinds = {"qmigrate": "qemu", "vzmigrate": "lxc"}
    done = [t for t in _sim(stack, "/tasks")["tasks"] if t["type"] in kinds and t.get("exitstatus") == "OK"]
    # The controller's own count, as Prometheus last scraped it before the loop stopped.
    counted = _value(stack, 'last_over_time(pvebalance_migrations_total{result="succeeded"}[15m])')
    assert 0 < counted <= len(done)
    placement = {g["vmid"]: g["node"] for g in _sim(stack, "/state")["guests"]}
    for task in done:
        vmid = int(task["id"])
        series = stack.query(f'pve_guest_info{{id="{kinds[task["type"]]}/{vmid}"}}')
        assert [s["metric"]["node"] for s in series] == [placement[vmid]], vmid


def test_alertmanager_delivers_load_alerts_to_the_controllers_webhook(story: Story) -> None:
    routes = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())["route"]["routes"]
    matcher = next(m for r in routes if r["receiver"] == "pvebalance-controller" for m in r["matchers"])
    routed = set(matcher.split("=~", 1)[1].strip('"').split("|"))
    events = _webhook_events(story.stack)
    # Never refused (the token file Alertmanager reads matches the controller's), and only
    # the load alerts the route names reach the controller.
    assert events and all(e["event"] == "webhook.received" for e in events), events
    delivered = {name for e in events for name in e.get("names", [])}
    assert delivered and delivered <= routed, delivered


def _substitute(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$node", "pve1").replace("$guest", "qemu/100"))


# Panels whose series exist only after something this story does not stage: a drain, a
# configured run.windows, an applied plan's first outcome horizon (5 minutes after it).
EMPTY_IN_THIS_STORY = {
    "Drained nodes": "no node is drained",
    "Inside a migration window": "the story's controller has no run.windows",
    "Next migration window opens": "the story's controller has no run.windows",
    "Plan prediction error": "measured at the first outcome horizon, 5 minutes after a plan; the story is shorter",
    "pvebalance_plan_observed_imbalance_ratio": "the same: measured from the first outcome horizon on",
}


def test_every_dashboard_panel_query_returns_data(story: Story) -> None:
    failures = []
    for query in panel_queries():
        answer = _range(story.stack, _substitute(query.expr), story.started)
        if answer.get("status") != "success":
            failures.append(f"{query.dashboard} / {query.panel}: {answer.get('error')}")
        elif not answer["data"]["result"] and not {query.panel, query.expr} & EMPTY_IN_THIS_STORY.keys():
            failures.append(f"{query.dashboard} / {query.panel}: no data for {query.expr}")
    assert failures == []
