"""Readers for single config values: each returns the typed value or raises one clear ConfigError.

Used by the policy and rules loaders so every bad value is reported the same way:
`<where>.<key>: <what was expected>, got <what was found>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pveapi.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def reject_unknown(data: Mapping[str, Any], known: frozenset[str] | set[str], where: str) -> None:
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    """A float within [low, high] (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number{_bounds(low, high)}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where}: expected a number{_bounds(low, high)}, got {value!r}")
    return float(value)


def count(value: Any, where: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}: expected a whole number >= {low}, got {value!r}")
    return value


def flag(value: Any, where: str) -> bool:
    """A YAML boolean, or the 0/1 integers the Proxmox API uses for booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{where}: expected true or false, got {value!r}")


def size_bytes(value: Any, where: str) -> int:
    """Bytes, as an integer or a string with a unit: `512MiB`, `8G`, `1.5TiB` (k/M/G binary or decimal)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a size such as 8GiB or 512MiB, got {value!r}")
    if isinstance(value, (int, float)) and value >= 0:
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            amount, prefix, binary = match.groups()
            base = 1024 if binary or not prefix else 1000
            return int(float(amount) * base ** _POWERS[prefix.lower()])
    raise ConfigError(f"{where}: expected a size such as 8GiB or 512MiB, got {value!r}")


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """A list of names (or one name); each a non-empty string."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        raise ConfigError(f"{where}: expected a name or a list of names, got {value!r}")
    return tuple(i.strip() for i in items)


def vmid_list(value: Any, where: str) -> tuple[int, ...]:
    """A list of VMIDs (or one VMID); Proxmox VMIDs are 100..999999999."""
    items = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if not isinstance(items, list):
        raise ConfigError(f"{where}: expected a VMID or a list of VMIDs, got {value!r}")
    vmids: list[int] = []
    for item in items:
        try:
            vmid = int(item) if not isinstance(item, bool) else -1
        except (TypeError, ValueError):
            vmid = -1
        if not 100 <= vmid <= 999_999_999:
            raise ConfigError(f"{where}: {item!r} is not a VMID (a whole number from 100 to 999999999)")
        vmids.append(vmid)
    return tuple(vmids)


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" >= {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


def finite_number(value: Any, where: str, low: float | None = None, high: float | None = None) -> float:
    """`number`, refusing NaN and the infinities (NaN passes every bound check)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number{_bounds(low, high)}, got {value!r}")
    return number(value, where, low, high)
