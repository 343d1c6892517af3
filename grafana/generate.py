#!/usr/bin/env python3
"""Generates pvebalance's Grafana dashboards into grafana/dashboards/.

Dashboards are written from this one file so that every panel uses the provisioned
datasource, panel ids stay unique and the layout stays consistent. Edit here, then run

    python3 grafana/generate.py          # rewrite grafana/dashboards/*.json
    python3 grafana/generate.py --check  # exit 1 if the committed JSON is out of date

Only the standard library is used, so it runs anywhere python3 does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "pvebalance-prometheus"}  # provisioning/datasources
SCHEMA_VERSION = 41  # Grafana 12's classic dashboard model
GRID_WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False  # tables and stats of "now"; graphs query a range


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # Grafana panel type: stat, timeseries, table, bargauge, state-timeline
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    width: int = 12
    height: int = 8
    thresholds: tuple[tuple[float, str], ...] = ()  # (from value, colour) above the base colour
    base: str = "green"  # colour below the first threshold
    max: float | None = None
    columns: tuple[str, ...] = ()  # tables: labels to show, in order
    options: dict[str, Any] = field(default_factory=dict)
    actions: tuple[dict[str, Any], ...] = ()  # Grafana 11.6+ panel actions (buttons that send a request)


def q(expr: str, legend: str = "", instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": panel.base, "value": None}] + [{"color": c, "value": v} for v, c in panel.thresholds]
    defaults: dict[str, Any] = {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if panel.max is not None:
        defaults.update(min=0, max=panel.max)
    if panel.actions:
        defaults["actions"] = list(panel.actions)
    targets = []
    for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
        target: dict[str, Any] = {
            "datasource": DATASOURCE,
            "refId": ref,
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": not query.instant,
            "instant": query.instant,
        }
        if panel.kind == "table":
            target["format"] = "table"
        targets.append(target)
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(panel),
    }
    if panel.kind == "table" and panel.columns:
        result["transformations"] = [_table_columns(panel.columns)]
    return result


def _options(panel: Panel) -> dict[str, Any]:
    base: dict[str, Any] = {
        "stat": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                 "colorMode": "value", "graphMode": "area", "textMode": "auto"},
        "timeseries": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]},
                       "tooltip": {"mode": "multi", "sort": "desc"}},
        "table": {"showHeader": True, "cellHeight": "sm"},
        "bargauge": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
        "state-timeline": {"showValue": "never", "mergeValues": True, "rowHeight": 0.9,
                           "legend": {"displayMode": "list", "placement": "bottom"}},
    }[panel.kind]
    return {**base, **panel.options}


def _table_columns(columns: tuple[str, ...]) -> dict[str, Any]:
    """Keep only the named labels (and the value), in this order."""
    keep = (*columns, "Value")
    return {
        "id": "organize",
        "options": {
            "excludeByName": {},
            "includeByName": {name: True for name in keep},
            "indexByName": {name: i for i, name in enumerate(keep)},
            "renameByName": {},
        },
    }


def layout(panels: Iterable[Panel]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at the grid width; ids count from 1."""
    out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append(panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def variable(name: str, label: str, query: str, regex: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"},
        "definition": query,
        "regex": regex,
        "refresh": 2,  # on time range change, so new guests and nodes appear
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


CONTROLLER_API = "${controller}/api/v1"


def field_ref(name: str) -> str:
    """Grafana's template for a field of the row an action runs on."""
    return f'${{__data.fields["{name}"]}}'


def action(title: str, method: str, path: str, confirmation: str, body: str = "") -> dict[str, Any]:
    """A button that sends one request to the controller's operator API from the browser, with
    the operator token the person typed into the dashboard's `operator_token` box (never saved
    in this JSON, never in the URL: docs/stack.md)."""
    return {
        "type": "fetch",
        "title": title,
        "confirmation": confirmation,
        "oneClick": False,
        "fetch": {
            "method": method,
            "url": CONTROLLER_API + path,
            "headers": [["Authorization", "Bearer ${operator_token}"], ["Content-Type", "application/json"]],
            "queryParams": [],
            "body": body,
        },
    }


def controller_variables() -> tuple[dict[str, Any], ...]:
    """Where the browser reaches the controller, and the operator token box (empty, not in the URL)."""
    return (
        {"name": "controller", "label": "Controller URL", "type": "textbox", "query": "http://localhost:9883",
         "current": {"text": "http://localhost:9883", "value": "http://localhost:9883"}, "hide": 0},
        {"name": "operator_token", "label": "Operator token", "type": "textbox", "query": "",
         "current": {"text": "", "value": ""}, "hide": 0, "skipUrlSync": True},
    )


def dashboard(uid: str, title: str, description: str, panels: list[Panel],
              variables: tuple[dict[str, Any], ...] = (), time_from: str = "now-6h") -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["pvebalance", "proxmox"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "templating": {"list": list(variables)},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "links": [{"type": "dashboards", "tags": ["pvebalance"], "asDropdown": True, "title": "pvebalance",
                   "includeVars": False, "keepTime": True}],
        "panels": layout(panels),
    }


LOAD_THRESHOLDS = ((0.7, "yellow"), (0.85, "red"))
IMBALANCE_THRESHOLDS = ((0.15, "yellow"), (0.25, "red"))  # red = the PveClusterImbalanced threshold


def overview() -> dict[str, Any]:
    panels = [
        Panel("Nodes online", "stat", (q("count(pvebalance:node_up:bool == 1)", instant=True),),
              "Nodes the Proxmox API reports online.", width=4, height=4),
        Panel("Nodes offline", "stat", (q("count(pvebalance:node_up:bool == 0) or vector(0)", instant=True),),
              "Nodes reported offline or whose status call fails (alert PveNodeOffline).",
              width=4, height=4, thresholds=((1, "red"),)),
        Panel("Running guests", "stat", (q("sum(pvebalance:node_running_guests:count)", instant=True),),
              "Running VMs and containers in the cluster.", width=4, height=4),
        Panel("Imbalance", "stat", (q("pvebalance:cluster_imbalance:ratio", instant=True),),
              "CRS imbalance of node loads: 0 = even, 1 = all load on one node. Red from the alert threshold.",
              unit="percentunit", width=4, height=4, thresholds=IMBALANCE_THRESHOLDS, max=1),
        Panel("Alerts pending or firing", "stat",
              (q('count(ALERTS{alertstate="firing"}) or vector(0)', "firing", instant=True),
               q('count(ALERTS{alertstate="pending"}) or vector(0)', "pending", instant=True)),
              "pvebalance alerts now: pending ones become firing once their condition has held long enough.",
              width=8, height=4, thresholds=((1, "red"),), options={"textMode": "value_and_name"}),
        Panel("Node CPU", "timeseries", (q("pvebalance:node_cpu:ratio", "{{node}}"),),
              "Share of each node's CPU threads in use.", unit="percentunit", thresholds=LOAD_THRESHOLDS, max=1),
        Panel("Node memory", "timeseries", (q("pvebalance:node_memory:ratio", "{{node}}"),),
              "Share of each node's memory in use.", unit="percentunit", thresholds=LOAD_THRESHOLDS, max=1),
        Panel("Node load (CPU and memory weighted)", "timeseries", (q("pvebalance:node_load:ratio", "{{node}}"),),
              "The load pvebalance balances: CPU and memory utilisation weighted equally.",
              unit="percentunit", thresholds=LOAD_THRESHOLDS, max=1),
        Panel("Cluster imbalance", "timeseries",
              (q("pvebalance:cluster_imbalance:ratio", "imbalance"),
               q("pvebalance:threshold_cluster_imbalance:ratio", "alert threshold")),
              "How uneven node loads are over time, against the PveClusterImbalanced threshold.",
              unit="percentunit", thresholds=IMBALANCE_THRESHOLDS, max=1),
        Panel("Load average (1 min)", "timeseries",
              (q('label_replace(pve_node_load1, "node", "$1", "id", "node/(.+)")', "{{node}}"),),
              "The nodes' 1-minute load average, as `uptime` shows it."),
        Panel("Running guests per node", "bargauge", (q("pvebalance:node_running_guests:count", "{{node}}", instant=True),),
              "How many running guests each node carries now."),
        Panel("Alerts", "table", (q("ALERTS", instant=True),),
              "Pending and firing alerts with their labels.", width=24, height=6,
              columns=("alertname", "alertstate", "severity", "node", "group")),
    ]
    return dashboard("pvebalance-overview", "pvebalance / Cluster overview",
                     "Nodes' CPU, memory and load over time, the imbalance, guests per node and alerts.", panels)


def node() -> dict[str, Any]:
    sel = 'id="node/$node"'

    def metrics(title: str, description: str, *series: tuple[str, str], unit: str = "short") -> Panel:
        """A graph of several of the exporter's per-node metrics, one line each."""
        return Panel(title, "timeseries", tuple(q(f"{name}{{{sel}}}", legend) for name, legend in series),
                     description, unit=unit)

    panels = [
        Panel("Status", "stat", (q(f"pve_up{{{sel}}}", instant=True),),
              "1 = online, 0 = offline.", width=4, height=4, options={"colorMode": "background"},
              base="red", thresholds=((1, "green"),)),
        Panel("Uptime", "stat", (q(f"pve_uptime_seconds{{{sel}}}", instant=True),), "Since the node booted.",
              unit="s", width=4, height=4),
        Panel("CPU threads", "stat", (q(f"pve_node_cpu_count{{{sel}}}", instant=True),), "Host CPU threads.",
              width=4, height=4),
        Panel("Memory size", "stat", (q(f"pve_memory_size_bytes{{{sel}}}", instant=True),), "Physical memory.",
              unit="bytes", width=4, height=4),
        Panel("Running guests", "stat", (q('pvebalance:node_running_guests:count{node="$node"}', instant=True),),
              "Running VMs and containers on this node.", width=8, height=4),
        Panel("CPU", "timeseries",
              (q(f"pve_cpu_usage_ratio{{{sel}}}", "used"),
               q("pvebalance:threshold_node_cpu:ratio", "alert threshold")),
              "Share of the node's CPU threads in use, against the PveNodeCpuHigh threshold.",
              unit="percentunit", max=1),
        metrics("Memory", "Memory used and available (PVE 9 reports `available`; older nodes report free).",
                ("pve_memory_usage_bytes", "used"), ("pve_node_memory_available_bytes", "available"),
                ("pve_memory_size_bytes", "size"), unit="bytes"),
        metrics("Load average", "Run-queue length averaged over 1, 5 and 15 minutes; compare with the CPU threads.",
                ("pve_node_load1", "1m"), ("pve_node_load5", "5m"), ("pve_node_load15", "15m")),
        metrics("IO wait", "Share of CPU time spent waiting for storage.", ("pve_node_iowait_ratio", "iowait"),
                unit="percentunit"),
        metrics("Swap and KSM", "Swap in use (a node under memory pressure swaps) and memory KSM deduplicates.",
                ("pve_node_swap_usage_bytes", "swap used"), ("pve_node_swap_size_bytes", "swap size"),
                ("pve_node_ksm_shared_bytes", "KSM shared"), unit="bytes"),
        Panel("Pressure (PSI, PVE 9)", "timeseries",
              (q(f"pve_node_pressure_ratio{{{sel}}}", "{{resource}} {{kind}}"),),
              "Share of time tasks stalled on CPU, IO or memory. Needs PVE 9 and the exporter's "
              "--collector.pressure flag.", unit="percentunit"),
        Panel("Guests on this node by CPU", "table",
              (q('sort_desc(pvebalance:guest_cpu:cores{node="$node"})', instant=True),),
              "Running guests with the CPU cores they use now, busiest first.", width=24, height=8,
              columns=("id", "name", "type"), unit="short"),
    ]
    variables = (variable("node", "Node", "label_values(pvebalance:node_up:bool, node)"),)
    return dashboard("pvebalance-node", "pvebalance / Node",
                     "One node: CPU, memory, load, IO wait, swap, pressure and the guests it runs.", panels, variables)


def guest() -> dict[str, Any]:
    sel = 'id="$guest"'
    panels = [
        Panel("Guest", "table", (q(f"pve_guest_info{{{sel}}}", instant=True),),
              "Name, node, type and tags.", width=16, height=4, columns=("id", "name", "node", "type", "tags")),
        Panel("Status", "stat", (q(f"pve_up{{{sel}}}", instant=True),), "1 = running, 0 = stopped.", width=4,
              height=4, options={"colorMode": "background"}, base="red", thresholds=((1, "green"),)),
        Panel("Uptime", "stat", (q(f"pve_uptime_seconds{{{sel}}}", instant=True),),
              "Since start or last migration.", unit="s", width=4, height=4),
        Panel("CPU", "timeseries",
              (q(f"pve_cpu_usage_ratio{{{sel}}} * pve_cpu_usage_limit{{{sel}}}", "cores used"),
               q(f"pve_cpu_usage_limit{{{sel}}}", "vCPUs")),
              "CPU in cores, against the guest's vCPUs; this is the demand pvebalance plans with."),
        Panel("Memory", "timeseries",
              (q(f"pve_memory_usage_bytes{{{sel}}}", "used"), q(f"pve_memory_size_bytes{{{sel}}}", "size")),
              "Memory in use and configured.", unit="bytes"),
        Panel("Node over time", "state-timeline", (q(f"pve_guest_info{{{sel}}}", "{{node}}"),),
              "Which node ran the guest: a change is a migration.", width=24, height=5),
        Panel("Network", "timeseries",
              (q(f"rate(pve_network_receive_bytes_total{{{sel}}}[$__rate_interval])", "receive"),
               q(f"rate(pve_network_transmit_bytes_total{{{sel}}}[$__rate_interval])", "transmit")),
              "Bytes per second (counters reset on migration).", unit="Bps"),
        Panel("Disk", "timeseries",
              (q(f"rate(pve_disk_read_bytes_total{{{sel}}}[$__rate_interval])", "read"),
               q(f"rate(pve_disk_written_bytes_total{{{sel}}}[$__rate_interval])", "write")),
              "Bytes per second.", unit="Bps"),
    ]
    # Shown by name, selected by id: names need not be unique, ids are.
    variables = (variable("guest", "Guest", "query_result(pve_guest_info)",
                          regex='/id="(?<value>[^"]+)".*name="(?<text>[^"]+)"/'),)
    return dashboard("pvebalance-guest", "pvebalance / Guest",
                     "One VM or container: CPU, memory, network, disk and the nodes it ran on.", panels, variables)


def balancer() -> dict[str, Any]:
    panels = [
        Panel("Imbalance now", "stat", (q('pvebalance_imbalance{when="now"}', instant=True),),
              "CRS imbalance the controller measured in its last cycle.", unit="percentunit", width=4, height=4,
              thresholds=IMBALANCE_THRESHOLDS, max=1),
        Panel("Imbalance after plan", "stat", (q('pvebalance_imbalance{when="predicted"}', instant=True),),
              "The imbalance once the current plan is carried out.", unit="percentunit", width=4, height=4,
              thresholds=IMBALANCE_THRESHOLDS, max=1),
        Panel("Moves in plan", "stat",
              (q('pvebalance_plan_moves{kind="mandatory"}', "mandatory", instant=True),
               q('pvebalance_plan_moves{kind="balance"}', "balance", instant=True)),
              "Mandatory moves repair a broken rule or evacuate a maintenance node; balance moves even the load.",
              width=6, height=4, options={"textMode": "value_and_name"}),
        Panel("Last successful cycle", "stat", (q("time() - pvebalance_last_success_timestamp_seconds", instant=True),),
              "How long ago the controller last completed a cycle.", unit="s", width=5, height=4,
              thresholds=((1800, "yellow"), (3600, "red"))),
        Panel("Data age", "stat", (q("pvebalance_data_age_seconds", instant=True),),
              "Age of the newest Prometheus sample the plan used; the controller refuses to migrate on stale data.",
              unit="s", width=5, height=4, thresholds=((300, "yellow"), (900, "red"))),
        Panel("Drained nodes", "table", (q("pvebalance_node_drained == 1", instant=True),),
              "Nodes drained with `pvebalance drain NODE`: they receive no guests until `pvebalance undrain NODE` "
              "brings their guests back.", width=6, height=5, columns=("node",)),
        Panel("Inside a migration window", "stat", (q("pvebalance_migration_window_open", instant=True),),
              "1: automatic mode may start migrations now (run.windows); 0: outside, running ones finish and "
              "nothing new starts (mandatory repairs only if run.windows.mandatory_outside).", width=4, height=5,
              thresholds=((1, "green"),), base="orange"),
        Panel("Next migration window opens", "stat",
              (q("pvebalance_migration_window_next_open_timestamp_seconds * 1000", instant=True),),
              "When the next migration window opens; empty while inside one or without run.windows.",
              unit="dateTimeAsIso", width=5, height=5, base="blue"),
        Panel("Node CPU models", "table", (q("pve_node_cpu_info", instant=True),),
              "Host CPU model per node: a guest with cpu: host only moves between nodes with the same model.",
              width=9, height=5, columns=("id", "model")),
        Panel("Current plan", "table", (q("pvebalance_plan_move_info", instant=True),),
              "The moves of the current plan in execution order, each with the reason it was chosen.",
              width=24, height=8, columns=("step", "vmid", "name", "type", "source", "target", "reason"),
              options={"sortBy": [{"displayName": "step", "desc": False}]},
              actions=(action(
                  "Apply this move", "POST", "/migrations",
                  f"Migrate {field_ref('name')} ({field_ref('vmid')}) from {field_ref('source')} to "
                  f"{field_ref('target')} now? The controller checks every hard rule, the memory limit and the "
                  "cooldown first and refuses the move if it breaks one.",
                  f'{{"vmid": {field_ref("vmid")}, "target": "{field_ref("target")}"}}'),)),
        Panel("Controller", "table", (q("pvebalance_plan_info * on () group_left (mode) (pvebalance_automation_mode == 1)",
                                        instant=True),),
              "The plan shown above and the automation mode, with the controller's actions (operators only: "
              "type the operator token into the box at the top).",
              width=24, height=4, columns=("plan_id", "mode"),
              actions=(
                  action("Apply plan", "POST", f"/plan/{field_ref('plan_id')}/apply",
                         f"Carry out plan {field_ref('plan_id')} now, every move in its order? Each move is checked "
                         "against the live cluster first; a plan that no longer holds is refused."),
                  action("Plan now", "POST", "/cycle",
                         "Make a fresh plan now (in automatic mode the controller then carries it out)?"),
                  action("Pause automation", "PUT", "/automation",
                         "Pause automation? Nothing migrates, not even on request, until it is resumed.",
                         '{"mode": "paused"}'),
                  action("Resume automation", "PUT", "/automation",
                         "Resume automatic balancing? The controller will migrate guests on its own every cycle.",
                         '{"mode": "automatic"}'),
              )),
        Panel("Imbalance: now and after plan", "timeseries",
              (q("pvebalance_imbalance", "{{when}}"),),
              "What the controller measured each cycle, and what its plan would reach.",
              unit="percentunit", thresholds=IMBALANCE_THRESHOLDS, max=1),
        Panel("Node load: now and after plan", "timeseries",
              (q("pvebalance_node_load_ratio", "{{node}} {{when}}"),),
              "The controller's weighted load per node, now and as predicted after the plan.",
              unit="percentunit", max=1),
        Panel("Migrations", "timeseries",
              (q("sum by (result) (increase(pvebalance_migrations_total[$__rate_interval]))", "{{result}}"),),
              "Migrations started, succeeded, failed (recorded, not retried blindly) and dropped "
              "(the live state changed before the move could start).", options={"drawStyle": "bars"}),
        Panel("Migration duration (90th percentile)", "timeseries",
              (q("histogram_quantile(0.9, sum by (le) (rate(pvebalance_migration_duration_seconds_bucket[$__rate_interval])))",
                 "p90"),),
              "How long migrations take to finish.", unit="s"),
        Panel("Controller cycles", "timeseries",
              (q("sum by (result) (increase(pvebalance_cycles_total[$__rate_interval]))", "{{result}}"),),
              "Cycles per interval by outcome: planned (manual mode), applied, skipped (e.g. stale data), failed."),
        Panel("Tags in use", "bargauge", (q("count by (tag) (pve_guest_tag_info)", "{{tag}}", instant=True),),
              "Guests per tag; pvebalance reads ignore, exclude_<group>, plb_* tags."),
        Panel("Ignored guests", "table",
              (q('pve_guest_tag_info{tag=~"ignore|plb_ignore.*"} * on (id) group_left (name, node) pve_guest_info',
                 instant=True),),
              "Guests pvebalance never moves (tags ignore, plb_ignore).", columns=("id", "name", "node", "tag")),
        Panel("Anti-affinity groups", "table",
              (q("count by (group, node) (pvebalance:guest_anti_affinity_group:info)", instant=True),),
              "Running guests of each anti-affinity group per node; more than 1 breaks the group "
              "(alert PveAntiAffinityViolated).", columns=("group", "node"), thresholds=((2, "red"),),
              options={"cellOptions": {"type": "color-text"}}),
        *outcome_panels(),
    ]
    return dashboard("pvebalance-balancer", "pvebalance / Balancer",
                     "The controller: current plan and its reasons, drained nodes, migration windows, node CPU "
                     "models, migrations and failures, tagged, ignored and anti-affinity guests.", panels, controller_variables(),
                     time_from="now-24h")


def outcome_panels() -> list[Panel]:
    """Did the applied plans do what they said (controller/outcomes.py)?"""
    return [
        Panel("Plan outcome: predicted and observed imbalance", "timeseries",
              (q("pvebalance_plan_predicted_imbalance_ratio", "predicted"),
               q("pvebalance_plan_observed_imbalance_ratio", "observed {{horizon}} after")),
              "What the newest applied plan predicted, and the imbalance measured from Prometheus 5 minutes, "
              "1 hour and 24 hours after it (run.outcome_horizons).", unit="percentunit", max=1),
        Panel("Plan prediction error", "timeseries",
              (q("pvebalance_plan_prediction_error_ratio", "{{horizon}}"),),
              "Observed minus predicted imbalance at each horizon; past the threshold an hour after a plan, "
              "PvebalancePlanOffPrediction fires.", thresholds=((0.1, "red"),)),
        Panel("Ping-pong moves", "stat", (q("increase(pvebalance_plan_ping_pongs_total[24h])", instant=True),),
              "Moved guests found back on their old node within their cooldown in the last 24 hours "
              "(alert PvebalancePingPong).", width=6, height=4, thresholds=((1, "red"),)),
    ]


DASHBOARDS = {"overview": overview, "node": node, "guest": guest, "balancer": balancer}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if grafana/dashboards/ differs from the generator")
    args = parser.parse_args(argv)
    rendered = render()
    stale = sorted(name for name, text in rendered.items()
                   if not (OUT / name).is_file() or (OUT / name).read_text() != text)
    extra = sorted(p.name for p in OUT.glob("*.json") if p.name not in rendered) if OUT.is_dir() else []
    if args.check:
        if stale or extra:
            print(f"grafana/dashboards is out of date ({', '.join(stale + extra)}): run python3 grafana/generate.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for name in stale:
        (OUT / name).write_text(rendered[name])
    for name in extra:
        (OUT / name).unlink()
    print(f"wrote {len(stale)} dashboard(s), removed {len(extra)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
