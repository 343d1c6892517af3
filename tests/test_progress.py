"""pveapi.progress on a stream that is not a terminal: plain lines, never a bar's redraws."""

from __future__ import annotations

import io

from pveapi.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_interval_with_count_estimate_and_a_closing_line() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("backfill", 4, "steps", stream=out, every=5.0, clock=clock) as progress:
        progress.update(1, "first")
        clock.now = 2.0
        progress.update(2, "second")  # within the interval: no line
        clock.now = 6.0
        progress.update(3, "third")
        clock.now = 8.0
        progress.update(4, "last")  # complete: the closing line says it
    assert out.getvalue().splitlines() == [
        "backfill: 1/4 steps (25%), 0s elapsed - first",
        "backfill: 3/4 steps (75%), 6s elapsed, about 2s left - third",
        "backfill: 4/4 steps (100%), 8s elapsed - done",
    ]
    assert "\r" not in out.getvalue()


def test_a_quick_step_prints_nothing_and_a_slow_one_says_what_it_is_doing() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("plan", stream=out, quiet_for=2.0, clock=clock) as progress:
        progress.update(note="reading the cluster")
        clock.now = 1.0
    assert out.getvalue() == ""
    with Progress("plan", stream=out, quiet_for=2.0, clock=clock) as progress:
        clock.now = 4.0
        progress.update(note="planning 60 guests on 5 nodes")
    assert out.getvalue().splitlines() == ["plan: 3s elapsed - planning 60 guests on 5 nodes", "plan: 3s elapsed - done"]


def test_outcome_lines_stay_in_order_with_progress() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress("apply", 2, "moves", stream=out, clock=clock) as progress:
        progress.say("[1/2] qemu/100 web01 pve1 -> pve5: started")
        progress.update(1)
    assert out.getvalue().splitlines() == [
        "[1/2] qemu/100 web01 pve1 -> pve5: started",
        "apply: 1/2 moves (50%), 0s elapsed",
        "apply: 1/2 moves (50%), 0s elapsed - done",
    ]
