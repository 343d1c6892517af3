"""Checks for scenario and fault input: each problem is one ConfigError naming where and what.

Every value is bounded: NaN, infinities and sizes or times no cluster has are refused here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pveapi.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
MAX_SIZE = 1024**6  # 1 EiB: more than any node, disk or storage
MAX_EPOCH = 4102444800.0  # 2100-01-01
MAX_TIME_SCALE = 1e6  # virtual seconds per real second
MAX_SECONDS = 10 * 366 * 86400.0  # the longest delay, duration or clock jump: ten years


def parse_size(value: Any, where: str) -> int:
    expected = f"{where}: expected a size like 8GiB or a number of bytes (at most 1 EiB), got {value!r}"
    if isinstance(value, bool):
        raise ConfigError(expected)
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ConfigError(expected)
        size = float(match.group(1)) * _UNITS[(match.group(2) or "").upper()[:1]]
    if not (math.isfinite(size) and 0 <= size <= MAX_SIZE):
        raise ConfigError(expected)
    return int(size)


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


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def listed(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def whole(value: Any, where: str, minimum: int | None = None, maximum: int = 2**31) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be at least {minimum}, got {value}")
    if value > maximum:
        raise ConfigError(f"{where}: must be at most {maximum}, got {value}")
    return value


def number(value: Any, where: str, minimum: float | None = None, maximum: float = MAX_SECONDS) -> float:
    """A finite number within [minimum, maximum]; the default maximum suits seconds and most factors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be at least {minimum}, got {value}")
    if value > maximum:
        raise ConfigError(f"{where}: must be at most {maximum:g}, got {value}")
    return float(value)


def unique(names: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: duplicate {what} {name!r}")
        seen.add(name)
