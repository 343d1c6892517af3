"""Migration windows: weekly time ranges in one time zone, minus blackout dates.

`run.windows` in the config. In automatic mode a migration starts only inside a window;
one running when the window closes is left to finish. Moves that repair a broken hard rule
or evacuate a maintenance node may start outside (`mandatory_outside`, on by default).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pveapi import values
from pveapi.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_KEYS = frozenset({"timezone", "weekly", "blackout", "mandatory_outside"})
_RANGE_KEYS = frozenset({"days", "start", "end"})
LOOKAHEAD_DAYS = 15  # a week, a fortnight of blackout dates at most, and a day's slack


@dataclass(frozen=True)
class WeeklyRange:
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes after midnight
    end: int  # minutes after midnight, up to 1440; before `start`: runs past midnight into the next day


@dataclass(frozen=True)
class MigrationWindows:
    zone: ZoneInfo
    weekly: tuple[WeeklyRange, ...]
    blackout: frozenset[dt.date]
    mandatory_outside: bool = True

    def inside(self, at: float) -> bool:
        local = dt.datetime.fromtimestamp(at, self.zone)
        if local.date() in self.blackout:
            return False
        minute, day = local.hour * 60 + local.minute, local.weekday()
        for r in self.weekly:
            if r.start < r.end and day in r.days and r.start <= minute < r.end:
                return True
            if r.start >= r.end and ((day in r.days and minute >= r.start) or ((day - 1) % 7 in r.days and minute < r.end)):
                return True
        return False

    def next_open(self, at: float) -> float | None:
        """When the next window opens after `at` (None: inside one now, or none within two weeks)."""
        if self.inside(at):
            return None
        today = dt.datetime.fromtimestamp(at, self.zone).date()
        candidates = []
        for offset in range(LOOKAHEAD_DAYS):
            date = today + dt.timedelta(days=offset)
            midnight = dt.datetime.combine(date, dt.time(), self.zone)
            candidates.append(midnight)  # a window running past a blackout date reopens at midnight
            candidates += [midnight + dt.timedelta(minutes=r.start) for r in self.weekly if date.weekday() in r.days]
        for moment in sorted(candidates):
            stamp = moment.timestamp()
            if stamp > at and self.inside(stamp):
                return stamp
        return None

    def describe(self, at: float) -> Mapping[str, Any]:
        """For /health: inside a window now, and when the next one opens."""
        return {"inside": self.inside(at), "next_open": self.next_open(at), "timezone": str(self.zone)}


def parse_windows(data: Any, where: str) -> MigrationWindows | None:
    """`run.windows`; None (always allowed) when absent."""
    if data is None:
        return None
    block = values.mapping(data, where)
    values.reject_unknown(block, _KEYS, where)
    zone_name = block.get("timezone", "UTC")
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone: unknown time zone {zone_name!r}; use an IANA name such as Europe/Berlin or UTC") from None
    weekly = block.get("weekly")
    if not isinstance(weekly, list) or not weekly:
        raise ConfigError(f"{where}.weekly: expected a list of {{days, start, end}} ranges, got {weekly!r}")
    blackout = block.get("blackout") or []
    if not isinstance(blackout, list):
        raise ConfigError(f"{where}.blackout: expected a list of dates (YYYY-MM-DD), got {blackout!r}")
    return MigrationWindows(
        zone=zone,
        weekly=tuple(_range(r, f"{where}.weekly[{i}]") for i, r in enumerate(weekly)),
        blackout=frozenset(_date(d, f"{where}.blackout[{i}]") for i, d in enumerate(blackout)),
        mandatory_outside=values.flag(block.get("mandatory_outside", True), f"{where}.mandatory_outside"),
    )


def _range(data: Any, where: str) -> WeeklyRange:
    block = values.mapping(data, where)
    values.reject_unknown(block, _RANGE_KEYS, where)
    days = values.name_list(block.get("days", list(DAYS)), f"{where}.days")
    unknown = [d for d in days if d.lower()[:3] not in DAYS]
    if unknown:
        raise ConfigError(f"{where}.days: {unknown[0]!r} is not a day; use mon, tue, wed, thu, fri, sat, sun")
    start, end = _minutes(block.get("start"), f"{where}.start"), _minutes(block.get("end"), f"{where}.end")
    if start == end or start == 1440:
        raise ConfigError(f"{where}: start and end must differ and start must be before 24:00, got {block.get('start')!r}-{block.get('end')!r}")
    return WeeklyRange(frozenset(DAYS.index(d.lower()[:3]) for d in days), start, end)


def _minutes(value: Any, where: str) -> int:
    match = _TIME.match(str(value)) if isinstance(value, str) else None
    minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= minutes <= 1440:
        raise ConfigError(f"{where}: expected a time of day such as 22:00 (00:00 to 24:00, quoted), got {value!r}")
    return minutes


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):  # YAML reads an unquoted 2026-12-24 as a date
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: expected a date such as 2026-12-24, got {value!r}") from None
