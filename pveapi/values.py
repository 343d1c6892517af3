"""The one home that parses and bounds config values: each reader returns the typed value or
raises one ConfigError of one line, `<where>: expected <what>, got <found>`.

Used by the controller config, the policy and rules loaders, the connection settings and the
saved-plan reader (and by the exporter and simulator for their own files), so every value is
checked the same way. NaN and infinity are refused everywhere, and every number has an upper
bound, so a typo can never switch a safety limit off or end in a traceback later.

    number(v, where, low, high)       a finite number within [low, high] (default +-1e15)
    count(v, where, low, high)        a whole number within [low, high] (3.0 counts as 3)
    duration(v, where, high, zero)    seconds: 30, "30s", "500ms", "5m", "1.5h", "7d", "2w";
                                      more than 0 (or exactly 0 with zero=True), at most `high`
    size_bytes(v, where, high)        bytes: a number, or binary units "512M", "8G", "8GiB", "1T"
                                      (8G = 8GiB = 8 * 1024**3, as Proxmox means it); "8GB" and
                                      "125MB" are decimal (8 * 1000**3)
    flag(v, where)                    true/false (or the API's 0/1)
    choice(v, where, options)         one of a fixed set of strings
    text(v, where)                    a non-empty string (stripped)
    name(v, where), name_list(...)    node and pool names: no spaces, at most 128 characters
    vmid(v, where), vmid_list(...)    Proxmox VMIDs, 100..999999999 (an int or a digit string)
    port(v, where)                    1..65535
    mapping(v, where), reject_unknown(data, known, where)

`found(v)` is the short, safe rendering of a bad value used in every message (long or deeply
nested values are cut).
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any

from pveapi.errors import ConfigError

HUGE = 1e15  # the default bound of a number: far above any real figure, far below overflow
MAX_BYTES = 2**60  # 1 EiB: more memory or disk than any one cluster has
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
YEAR = 366 * DAY  # the default longest duration
MIN_VMID, MAX_VMID = 100, 999_999_999

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtpe]?)(ib|i|b)?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5, "e": 6}
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,128}$")

_short = reprlib.Repr()
_short.maxlevel, _short.maxstring, _short.maxother, _short.maxlist, _short.maxdict = 2, 60, 60, 4, 4


def found(value: Any) -> str:
    """A bad value as an error message shows it: short, one line, safe for any nesting."""
    return _short.repr(value).replace("\n", " ")


def _fail(where: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{where}: expected {expected}, got {found(value)}")


def reject_unknown(data: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    known = set(known)
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _real(value: Any) -> float | None:
    """The value as a finite float, or None for anything that is not one (bools, NaN, inf, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def number(value: Any, where: str, low: float = -HUGE, high: float = HUGE) -> float:
    """A finite float within [low, high]."""
    result = _real(value)
    if result is None or not low <= result <= high:
        raise _fail(where, f"a number from {low:g} to {high:g}", value)
    return result


def count(value: Any, where: str, low: int = 0, high: int = 1_000_000_000) -> int:
    """A whole number within [low, high]."""
    result = _real(value)
    if result is None or not result.is_integer() or not low <= result <= high:
        raise _fail(where, f"a whole number from {low} to {high}", value)
    return int(result)


def duration(value: Any, where: str, high: float = YEAR, zero: bool = False) -> float:
    """Seconds from a number (seconds) or a string with a unit; see the module docstring."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None
    else:
        seconds = _real(value)
    if seconds is None or not (0 < seconds <= high or (zero and seconds == 0)):
        floor = "0 (off) or more" if zero else "more than 0"
        raise _fail(where, f"a duration such as 30s, 5m or 1h, {floor}, at most {_human(high)}", value)
    return seconds


def _human(seconds: float) -> str:
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def size_bytes(value: Any, where: str, high: int = MAX_BYTES) -> int:
    """Bytes from a number or a string with a unit; see the module docstring."""
    amount: float | None
    if isinstance(value, str):
        match = _SIZE.match(value)
        amount = None
        if match:
            digits, prefix, suffix = match.groups()
            decimal = bool(prefix) and (suffix or "").lower() == "b"
            amount = float(digits) * (1000 if decimal else 1024) ** _POWERS[prefix.lower()]
    else:
        amount = _real(value)
    if amount is None or not 0 <= amount <= high:
        raise _fail(where, f"a size such as 8GiB or 512MiB (binary; 8GB is decimal), at most {_human_bytes(high)}", value)
    return int(amount)


def _human_bytes(size: int) -> str:
    """A bound in the largest binary unit it is a whole number of (2**60 is 1EiB, not 1.04858e+06TiB)."""
    for unit in "EPTGMK":
        scale = 1024 ** (" KMGTPE".index(unit))
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}iB"
    return f"{size}B"


def flag(value: Any, where: str) -> bool:
    """A YAML boolean, or the 0/1 integers the Proxmox API uses for booleans."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(where, "true or false", value)


def choice(value: Any, where: str, options: Iterable[str]) -> str:
    options = tuple(options)
    if not isinstance(value, str) or value not in options:
        raise _fail(where, f"one of {', '.join(options)}", value)
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "a non-empty string", value)
    return value.strip()


def name(value: Any, where: str) -> str:
    """A node or pool name: a string without spaces or control characters, at most 128 long."""
    if not isinstance(value, str) or not _NAME.match(value.strip()):
        raise _fail(where, "a name (no spaces, at most 128 characters)", value)
    return value.strip()


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """A list of names (or one name)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise _fail(where, "a name or a list of names", value)
    return tuple(name(item, f"{where}[{i}]") for i, item in enumerate(items))


def vmid(value: Any, where: str) -> int:
    """A Proxmox VMID: a whole number from 100 to 999999999, or such a number as text."""
    digits = isinstance(value, str) and value.strip().isdecimal() and len(value) < 12
    result = _real(int(value) if digits else value)
    if result is None or not result.is_integer() or not MIN_VMID <= result <= MAX_VMID:
        raise _fail(where, f"a VMID (a whole number from {MIN_VMID} to {MAX_VMID})", value)
    return int(result)


def vmid_list(value: Any, where: str) -> tuple[int, ...]:
    """A list of VMIDs (or one VMID)."""
    items = [value] if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if not isinstance(items, list):
        raise _fail(where, "a VMID or a list of VMIDs", value)
    return tuple(vmid(item, where) for item in items)


def port(value: Any, where: str) -> int:
    return count(value, where, 1, 65535)
