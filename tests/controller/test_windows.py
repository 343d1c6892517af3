"""Migration windows (`run.windows`): parsing, the clock arithmetic, and the loop keeping to them
on the simulated demo cluster."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from controller.config import Config
from controller.loop import Controller
from controller.windows import parse_windows
from pveapi.client import PveClient
from pveapi.errors import ConfigError
from tests.controller.conftest import Watch
from tests.support.sim import RunningSimulator

AUTO = {"automation": "automatic", "hold_time": 0, "cooldown": "1h", "interval": "5m", "lease": "local"}


def _at(text: str, zone: str = "UTC") -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc if zone == "UTC" else None).timestamp()


def test_weekly_ranges_wrap_past_midnight_blackouts_close_them_and_next_open_is_found() -> None:
    windows = parse_windows({"timezone": "UTC", "weekly": [{"days": ["fri"], "start": "22:00", "end": "06:00"}],
                             "blackout": ["2026-12-26"]}, "run.windows")
    assert windows is not None
    assert windows.inside(_at("2026-12-04T23:00:00"))  # a Friday night
    assert windows.inside(_at("2026-12-05T05:59:00"))  # Saturday morning, same window
    assert not windows.inside(_at("2026-12-05T06:00:00"))
    assert windows.next_open(_at("2026-12-05T06:00:00")) == _at("2026-12-11T22:00:00")
    # Christmas Friday's window runs into the blackout Saturday: it closes at midnight.
    assert windows.inside(_at("2026-12-25T23:00:00")) and not windows.inside(_at("2026-12-26T01:00:00"))
    assert windows.next_open(_at("2026-12-04T23:00:00")) is None  # inside one now
    berlin = parse_windows({"timezone": "Europe/Berlin", "weekly": [{"start": "01:00", "end": "02:00"}]}, "w")
    assert berlin is not None and berlin.inside(_at("2026-07-01T23:30:00")) and not berlin.inside(_at("2026-07-01T01:30:00"))


@pytest.mark.parametrize("block, message", [
    ({"weekly": []}, "run.windows.weekly: expected a list"),
    ({"timezone": "Mars/Olympus", "weekly": [{"start": "01:00", "end": "02:00"}]}, "unknown time zone 'Mars/Olympus'"),
    ({"weekly": [{"days": ["someday"], "start": "01:00", "end": "02:00"}]}, "'someday' is not a day"),
    ({"weekly": [{"start": "25:00", "end": "02:00"}]}, "run.windows.weekly[0].start: expected a time of day"),
    ({"weekly": [{"start": 60, "end": "02:00"}]}, "run.windows.weekly[0].start: expected a time of day"),
    ({"weekly": [{"start": "01:00", "end": "02:00"}], "blackout": ["tomorrow"]}, "run.windows.blackout[0]: expected a date"),
    ({"weekly": [{"start": "01:00", "end": "02:00"}], "mandatory_outside": "maybe"}, "mandatory_outside: expected true or false"),
])
def test_bad_windows_are_one_line_naming_the_key(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_windows(block, "run.windows")
    assert message in str(caught.value)


def _window_closing_in(sim: RunningSimulator, minutes: int) -> dict[str, Any]:
    """A window that opened just now (the clock is set to a whole minute) and closes in `minutes`."""
    now = dt.datetime.fromtimestamp(sim.clock(), dt.timezone.utc)
    start = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    sim.set_time(start.timestamp())
    end = start + dt.timedelta(minutes=minutes)
    assert end.date() == start.date(), "test clock too close to midnight"
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[start.weekday()]
    return {"timezone": "UTC", "weekly": [{"days": [day], "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}],
            "mandatory_outside": False}


def test_a_window_closing_mid_plan_lets_the_running_migration_finish_and_starts_nothing_new(
    frozen_sim: RunningSimulator, make_config: Callable[..., Config]
) -> None:
    windows = _window_closing_in(frozen_sim, 1)
    config = make_config(frozen_sim, run={**AUTO, "windows": windows}, apply={"poll_interval": 5, "max_in_flight": 1})
    client = PveClient(config.proxmox)
    watch = Watch(frozen_sim, client)
    controller = Controller(config, client, None, clock=frozen_sim.clock, sleep=watch.sleep)
    try:
        summary = controller.cycle()
        assert summary.report is not None
        report = summary.report
        assert report.stopped is not None and "migration window closed" in report.stopped, report.summary
        assert report.count("succeeded") >= 1 and report.count("not_started") >= 1
        assert report.count("failed") == 0  # the one running at the close was left to finish
        closes = config.run.windows.next_open(frozen_sim.clock()) if config.run.windows else None
        started = sorted(int(t["starttime"]) for t in frozen_sim.tasks() if t["type"] == "qmigrate")
        window_end = _at(f"{dt.datetime.fromtimestamp(frozen_sim.clock(), dt.timezone.utc).date()}T"
                         f"{windows['weekly'][0]['end']}:00")
        assert started and all(s < window_end for s in started)
        assert watch.problems == []
        # Outside the window: the next cycle starts nothing, and says when the next one opens.
        before = len(frozen_sim.tasks())
        later = controller.cycle()
        assert later.result == "skipped" and "outside the migration windows" in later.reason
        assert len(frozen_sim.tasks()) == before
        ok, health = controller.health()
        assert health["migration_window"]["inside"] is False
        assert health["migration_window"]["next_open"] == closes
        metrics = controller.metrics.render().decode()
        assert "pvebalance_migration_window_open 0.0" in metrics
    finally:
        controller.release()
