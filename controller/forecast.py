"""The statistics that look past the window average: `forecast(D)` and `blend(...)`.

`forecast(6h)`: each guest's value `predict_linear`-ed 6 h past the query time from the
window's samples (least squares), clamped to what the guest can physically use: CPU to
0..100 % of its vCPUs, memory to 0..its configured size. For guests that grow steadily (a
filling cache, a build-up of users) the plan then relieves a node before it is overloaded.
`blend(0.5*now, 0.3*24h, 0.2*7d)`: a weighted mix of window averages (`now` is the last
5 minutes), so a plan follows the present without forgetting the day or the week.

Both stay one vectorised query per figure, whatever the cluster size. `trend_expr` gives the
advisor every guest's and node's slope over the window, in one query too.
"""

from __future__ import annotations

import re

from pveapi import values
from pveapi.errors import ConfigError

NOW_WINDOW = "5m"  # `now` in a blend: the newest samples, a few scrapes
_DURATION = r"[0-9]+(?:\.[0-9]+)?(?:s|m|h|d)"
FORECAST = re.compile(rf"forecast\(({_DURATION})\)")
BLEND = re.compile(r"blend\((.+)\)")
_PART = re.compile(rf"([0-9]*\.?[0-9]+)\*(now|{_DURATION})")
# What each usage series may at most reach, as a PromQL bound (per id) or a constant.
_CEILING = {"pve_cpu_usage_ratio": "1", "pve_memory_usage_bytes": "pve_memory_size_bytes"}


def duration_text(value: float) -> str:
    """`21600` -> `6h`, `300` -> `5m`, `45` -> `45s`."""
    if value % 3600 == 0:
        return f"{value / 3600:g}h"
    if value % 60 == 0:
        return f"{value / 60:g}m"
    return f"{value:g}s"


def parse_forecast(text: str, where: str) -> float | None:
    """`forecast(6h)` -> seconds ahead; None when `text` is not a forecast."""
    match = FORECAST.fullmatch(text)
    if not match:
        return None
    try:
        return values.duration(match.group(1), where, 7 * values.DAY)
    except ConfigError:
        raise ConfigError(f"{where}: forecast(D) needs 0 < D <= 7d, got {text!r}") from None


def parse_blend(text: str, where: str) -> tuple[tuple[float, str], ...] | None:
    """`blend(0.5*now,0.3*24h,0.2*7d)` -> ((weight, window), ...); None when not a blend."""
    match = BLEND.fullmatch(text)
    if not match:
        return None
    parts = []
    for item in match.group(1).split(","):
        part = _PART.fullmatch(item)
        if not part:
            raise ConfigError(f"{where}: blend parts are WEIGHT*WINDOW such as 0.3*24h or 0.5*now, got {item!r}")
        parts.append((float(part.group(1)), NOW_WINDOW if part.group(2) == "now" else part.group(2)))
    total = sum(w for w, _ in parts)
    if any(w <= 0 for w, _ in parts) or abs(total - 1) > 1e-6:
        raise ConfigError(f"{where}: blend weights must be positive and add up to 1, got {total:g}")
    return tuple(parts)


def by_id(function: str, metric: str, selector: str, window: str, *args: str) -> str:
    """`function` over each series' window of samples, duplicate series (two exporters) folded by id."""
    return f"max by (id) ({function}({metric}{{{selector}}}[{window}]{''.join(', ' + a for a in args)}))"


def forecast_expr(metric: str, selector: str, window: str, ahead: float) -> str:
    """The metric's value `ahead` seconds on, by id, clamped to 0..its physical ceiling."""
    predicted = f"clamp_min({by_id('predict_linear', metric, selector, window, f'{ahead:g}')}, 0)"
    ceiling = _CEILING.get(metric)
    if ceiling is None:
        return predicted
    if ceiling.isdigit():
        return f"clamp_max({predicted}, {ceiling})"
    bound = f"max by (id) (max_over_time({ceiling}{{{selector}}}[{window}]))"
    # Above the ceiling: the ceiling, for the ids that have a prediction at all.
    return f"(({predicted}) < on(id) {bound}) or on(id) ({bound} and on(id) ({predicted}))"


def blend_expr(metric: str, selector: str, parts: tuple[tuple[float, str], ...]) -> str:
    """The weighted sum of the metric's window averages, by id (ids lacking a window drop out)."""
    return "(" + " + ".join(f"{weight:g} * {by_id('avg_over_time', metric, selector, window)}"
                      for weight, window in parts) + ")"


def trend_expr(selector: str, window: str) -> str:
    """Every id's least-squares slope over the window (`deriv`), CPU in cores and memory in bytes
    per second, in one query: each series keyed `cpu:<id>` or `memory:<id>` in the `trend` label."""
    cores = f"{by_id('deriv', 'pve_cpu_usage_ratio', selector, window)} * on(id) {by_id('max_over_time', 'pve_cpu_usage_limit', selector, window)}"
    parts = (("cpu", cores), ("memory", by_id("deriv", "pve_memory_usage_bytes", selector, window)))
    return " or ".join(f'label_replace({expr}, "trend", "{name}:$1", "id", "(.+)")' for name, expr in parts)


def describe_blend(parts: tuple[tuple[float, str], ...]) -> str:
    return "blend(" + ", ".join(f"{w:g}*{'now' if win == NOW_WINDOW else win}" for w, win in parts) + ")"
