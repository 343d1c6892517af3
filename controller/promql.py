"""Usage history from any Prometheus-compatible query API, in a fixed number of queries.

Three instant queries per plan, whatever the cluster size: CPU in cores, memory in bytes
(both over the configured window and statistic, for every node and guest at once) and the
newest sample time of every series (freshness); two more, every node's and every guest's own
stall (PSI), only when `policy.pressure_weight` is set. Only `/api/v1/query` is used, so Prometheus, VictoriaMetrics,
Thanos and Mimir all answer it.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import structlog

from controller import forecast
from planner.model import DEFAULT_WINDOW
from pveapi import values
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.settings import Secret

log = structlog.get_logger("pvebalance.promql")

# Guest series, by the exporter's `id` label. Nodes are not asked: a node's demand is built from
# its current guests (see observe._node_usage), never from its own window average.
ID_SELECTOR = 'id=~"qemu/.+|lxc/.+"'
TREND_SELECTOR = 'id=~"qemu/.+|lxc/.+|node/.+"'  # the advisor's trends: nodes too (what their figures say)
NEEDED_SERIES = ("pve_cpu_usage_ratio", "pve_cpu_usage_limit", "pve_memory_usage_bytes")
# Seconds a sample may be dated ahead of this host's clock (clocks differ a little); a sample
# further in the future is not fresh data but a wrong clock, and is not used.
CLOCK_SKEW = 60.0
MAX_CORES = 65536.0  # a guest's CPU figure above this is not a reading
HOUR = 3600.0


class PrometheusError(PvebalanceError):
    """Prometheus could not be asked, or answered something that is not a query result."""


@dataclass(frozen=True)
class Statistic:
    """How a window of samples becomes one figure: `avg`, `quantile(q)`, `mean_stddev(k)`,
    `forecast(D)` (param: seconds ahead) or `blend(W*WINDOW, ...)` (parts); see controller/forecast.py."""

    kind: Literal["avg", "quantile", "mean_stddev", "forecast", "blend"] = "avg"
    param: float = 0.0
    parts: tuple[tuple[float, str], ...] = ()  # blend: (weight, window)

    @classmethod
    def parse(cls, value: Any, where: str) -> Statistic:
        text = value.strip().replace(" ", "") if isinstance(value, str) else ""
        if text == "avg":
            return cls()
        ahead = forecast.parse_forecast(text, where)
        if ahead is not None:
            return cls("forecast", ahead)
        parts = forecast.parse_blend(text, where)
        if parts is not None:
            return cls("blend", parts=parts)
        match = re.fullmatch(r"(quantile|mean_stddev)\((\d{1,6}(?:\.\d{1,12})?)\)", text)
        if not match:
            raise ConfigError(
                f"{where}: expected avg, quantile(Q) with 0<Q<=1, mean_stddev(K) with 0<=K<=10, forecast(6h) or "
                f"blend(0.5*now, 0.3*24h, 0.2*7d), got {values.found(value)}"
            )
        kind, param = match.group(1), float(match.group(2))
        if kind == "quantile" and not 0 < param <= 1:
            raise ConfigError(f"{where}: the quantile must be in (0, 1], got {param:g}")
        return cls(kind, values.number(param, f"{where}: mean_stddev's K", 0.0, 10.0))  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind == "forecast":
            return f"forecast({forecast.duration_text(self.param)})"
        if self.kind == "blend":
            return forecast.describe_blend(self.parts)
        return "avg" if self.kind == "avg" else f"{self.kind}({self.param:g})"


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    window: str = DEFAULT_WINDOW
    statistic: Statistic = Statistic()
    max_data_age: float = 300.0  # seconds: newer data than this or the cycle does not act on it
    bearer_token: Secret | None = field(default=None, repr=False)
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Scope-OrgID for Mimir
    verify_ssl: bool | str = True
    timeout: float = 10.0



def _over_window(metric: str, window: str, statistic: Statistic) -> str:
    if statistic.kind == "forecast":
        return forecast.forecast_expr(metric, ID_SELECTOR, window, statistic.param)
    if statistic.kind == "blend":
        return forecast.blend_expr(metric, ID_SELECTOR, statistic.parts)
    selector = f"{metric}{{{ID_SELECTOR}}}[{window}]"
    if statistic.kind == "quantile":
        inner = f"quantile_over_time({statistic.param:g}, {selector})"
    elif statistic.kind == "mean_stddev":
        inner = f"avg_over_time({selector}) + {statistic.param:g} * stddev_over_time({selector})"
    else:
        inner = f"avg_over_time({selector})"
    # `max by (id)` folds duplicate series (two exporters, HA Prometheus pairs) into one.
    return f"max by (id) ({inner})"


def history_queries(window: str, statistic: Statistic) -> dict[str, str]:
    """The PromQL the controller runs, by what it measures."""
    return {
        "cpu_cores": (
            f"{_over_window('pve_cpu_usage_ratio', window, statistic)} * on(id) "
            f"{forecast.by_id('max_over_time', 'pve_cpu_usage_limit', ID_SELECTOR, window)}"
        ),
        "mem_bytes": _over_window("pve_memory_usage_bytes", window, statistic),
        # timestamp() of a plain selector is the newest sample within the lookback (5 min by
        # default): series without one count as stale, which is the safe side.
        "last_seen": f"max by (id) (timestamp(pve_memory_usage_bytes{{{ID_SELECTOR}}}))",
    }


def _stall_query(metric: str, ids: str, window: str) -> str:
    selector = f'{metric}{{{ids}, resource=~"cpu|memory", kind="some"}}[{window}]'
    return f"sum by (id) (max by (id, resource) (avg_over_time({selector})))"


def pressure_query(window: str) -> str:
    """Every node's CPU + memory PSI `some` averaged over the window (fractions of time, 0..2).

    Always the window's average, whatever the statistic: PSI is itself an average, and a stall
    that came and went within the window is the contention utilisation misses.
    """
    return _stall_query("pve_node_pressure_ratio", 'id=~"node/.+"', window)


def guest_pressure_query(window: str) -> str:
    """Every guest's own CPU + memory PSI `some` over the window, as `pressure_query` for nodes."""
    return _stall_query("pve_guest_pressure_ratio", ID_SELECTOR, window)


@dataclass(frozen=True)
class History:
    """What Prometheus knows, keyed by /cluster/resources id (`qemu/100`, `node/pve1`)."""

    cpu_cores: Mapping[str, float]
    mem_bytes: Mapping[str, float]
    last_seen: Mapping[str, float]
    at: float  # the evaluation time of the queries
    max_age: float
    window: str
    statistic: str
    queries: int = 0
    pressure: Mapping[str, float] | None = None  # node id -> stall (pressure_query); None: not asked
    guest_pressure: Mapping[str, float] | None = None  # guest id -> own stall (guest_pressure_query)

    @property
    def newest_sample(self) -> float | None:
        """The newest sample time, leaving out samples dated in the future (a wrong clock)."""
        return max((seen for seen in self.last_seen.values() if seen <= self.at + CLOCK_SKEW), default=None)

    @property
    def future_samples(self) -> int:
        """Series whose newest sample is dated more than CLOCK_SKEW ahead of the query time."""
        return sum(1 for seen in self.last_seen.values() if seen > self.at + CLOCK_SKEW)

    @property
    def data_age(self) -> float | None:
        """Seconds since the newest sample of any series, None when there is none."""
        newest = self.newest_sample
        return None if newest is None else max(0.0, self.at - newest)

    @property
    def fresh(self) -> bool:
        age = self.data_age
        return age is not None and age <= self.max_age

    def usage(self, resource_id: str) -> tuple[float, int] | None:
        """(cores, bytes) for one node or guest, or None when missing or stale."""
        seen = self.last_seen.get(resource_id)
        if seen is None or not -CLOCK_SKEW <= self.at - seen <= self.max_age:
            return None
        cores, mem = self.cpu_cores.get(resource_id), self.mem_bytes.get(resource_id)
        if cores is None or mem is None or not 0 <= cores <= MAX_CORES or not 0 <= mem <= values.MAX_BYTES:
            return None  # missing, or a figure no guest can have: the live one is used instead
        return cores, int(mem)

    def node_pressure(self) -> dict[str, float]:
        """Node name -> stall, leaving out figures no PSI can have (each resource is 0..1)."""
        return {
            resource_id.removeprefix("node/"): stall
            for resource_id, stall in (self.pressure or {}).items()
            if resource_id.startswith("node/") and 0 <= stall <= 2
        }

    def guest_stall(self) -> dict[int, float]:
        """vmid -> the guest's own stall, leaving out ids and figures no guest PSI can have."""
        stalls: dict[int, float] = {}
        for resource_id, stall in (self.guest_pressure or {}).items():
            kind, _, vmid = resource_id.partition("/")
            if kind in ("qemu", "lxc") and vmid.isdigit() and 0 <= stall <= 2:
                stalls[int(vmid)] = stall
        return stalls


@dataclass
class PromQL:
    settings: PrometheusSettings
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        s = self.settings
        self.session.headers.update(s.headers)
        if s.bearer_token is not None:
            self.session.headers["Authorization"] = f"Bearer {s.bearer_token.reveal()}"
        elif s.username is not None and s.password is not None:
            self.session.auth = (s.username, s.password.reveal())
        parts = urlsplit(s.url)
        if parts.username and self.session.auth is None and s.bearer_token is None:
            self.session.auth = (unquote(parts.username), unquote(parts.password or ""))
        # Requests and error messages name the server without any credentials the URL carries.
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        netloc = f"{host}{':' + str(parts.port) if parts.port else ''}"
        self.where = f"Prometheus {parts.scheme}://{netloc}"
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))

    def query(self, expr: str, at: float | None = None, key: str = "id") -> dict[str, float]:
        """Run an instant query; returns value by the `key` label (series without one are ignored)."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            response = self.session.get(
                f"{self.base}/api/v1/query", params=params, timeout=self.settings.timeout,
                verify=self.settings.verify_ssl,  # per request: a session value loses to REQUESTS_CA_BUNDLE
            )
        except requests.Timeout:
            raise PrometheusError(f"{self.where}: no answer within {self.settings.timeout:g}s - check the server or raise prometheus.timeout") from None
        except requests.exceptions.SSLError:
            raise PrometheusError(f"{self.where}: TLS verification failed - set prometheus.verify_ssl to the CA bundle") from None
        except requests.RequestException as exc:
            raise PrometheusError(f"{self.where}: unreachable ({type(exc).__name__}) - check prometheus.url") from None
        return _vector(self.where, response, key)

    def history(self, at: float | None = None, pressure: bool = False) -> History:
        """The usage history; with `pressure`, every node's stall too (one more query)."""
        at = time.time() if at is None else at
        queries = history_queries(self.settings.window, self.settings.statistic)
        if pressure:
            queries["pressure"] = pressure_query(self.settings.window)
            queries["guest_pressure"] = guest_pressure_query(self.settings.window)
        results = {name: self.query(expr, at) for name, expr in queries.items()}
        return History(
            cpu_cores=results["cpu_cores"],
            mem_bytes=results["mem_bytes"],
            last_seen=results["last_seen"],
            at=at,
            max_age=self.settings.max_data_age,
            window=self.settings.window,
            statistic=str(self.settings.statistic),
            queries=len(queries),
            pressure=results.get("pressure"),
            guest_pressure=results.get("guest_pressure"),
        )

    def trends(self, at: float | None = None) -> dict[str, tuple[float, float]]:
        """Every guest's and node's slope over the window, by id: (CPU cores, memory bytes) per
        hour; one query (forecast.trend_expr). An id lacking one of them is left out."""
        slopes = self.query(forecast.trend_expr(TREND_SELECTOR, self.settings.window), at, key="trend")
        by_id: dict[str, dict[str, float]] = {}
        for key, per_second in slopes.items():
            resource, _, resource_id = key.partition(":")
            by_id.setdefault(resource_id, {})[resource] = per_second * HOUR
        return {i: (f["cpu"], f["memory"]) for i, f in sorted(by_id.items()) if {"cpu", "memory"} <= f.keys()}

    def series_present(self, at: float | None = None) -> dict[str, int]:
        """How many series of each needed metric exist now (for `pvebalance check`)."""
        names = "|".join(NEEDED_SERIES)
        counts = self.query(f'count by (__name__) ({{__name__=~"{names}", {ID_SELECTOR}}})', at, key="__name__")
        return {name: int(counts.get(name, 0)) for name in NEEDED_SERIES}


def _vector(where: str, response: requests.Response, key: str) -> dict[str, float]:
    if response.status_code in (401, 403):
        raise PrometheusError(f"{where}: HTTP {response.status_code} - check prometheus.bearer_token or username/password")
    try:
        body = response.json()
    except RecursionError:
        raise PrometheusError(f"{where}: the answer is nested too deeply to be a query result") from None
    except ValueError:
        raise PrometheusError(
            f"{where}: HTTP {response.status_code}, and the answer is not JSON - is prometheus.url a Prometheus query API?"
        ) from None
    if not isinstance(body, Mapping) or body.get("status") != "success":
        error = body.get("error", "no error text") if isinstance(body, Mapping) else "not an object"
        raise PrometheusError(f"{where}: query failed (HTTP {response.status_code}): {error}")
    if body.get("warnings"):  # Thanos / Mimir partial answers: usable, but say so
        log.warning("prometheus.warnings", server=where, warnings=[str(w) for w in body["warnings"]][:5])
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise PrometheusError(f"{where}: expected an instant vector result, got {str(data)[:80]!r}")
    figures: dict[str, float] = {}
    for item in data["result"]:
        try:
            resource_id = item["metric"][key]
            value = float(item["value"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            continue  # a series we cannot use is treated as absent: the guest falls back to live figures
        if math.isfinite(value) and abs(value) <= values.HUGE:  # beyond that, not a reading
            figures[str(resource_id)] = value
    return figures
