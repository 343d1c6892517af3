"""What only the simulator checks in scenario, fault and admin input: its bounds, its start time
and its list rules. Every other value is read by `pveapi.values` (the one home for config values)
with these bounds passed in; each problem is one ConfigError naming where and what.

Every value is bounded: NaN, infinities and sizes or times no cluster has are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pveapi.errors import ConfigError

MAX_EPOCH = 4102444800.0  # 2100-01-01
MAX_TIME_SCALE = 1e6  # virtual seconds per real second
MAX_SECONDS = 10 * 366 * 86400.0  # the longest delay, duration or clock jump: ten years
MAX_SEED = 2**31  # the largest scenario seed


def parse_start(value: Any, where: str) -> float | None:
    """An epoch (number or numeric string) or an ISO time; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if not isinstance(value, bool):  # float(True) would be 1.0: a YAML `yes` is not a time
        try:
            epoch = float(value)
        except (TypeError, ValueError):
            try:
                epoch = datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
            except ValueError:
                epoch = math.nan
        if 0 <= epoch <= MAX_EPOCH:
            return epoch
    raise ConfigError(f"{where}: expected an epoch or an ISO time like 2026-01-05T08:00:00Z, got {value!r}")


def required(d: Mapping[str, Any], key: str, where: str) -> Any:
    if d.get(key) is None:
        raise ConfigError(f"{where}: `{key}` is required")
    return d[key]


def listed(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def unique(names: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: duplicate {what} {name!r}")
        seen.add(name)
