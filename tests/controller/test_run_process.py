"""`pvebalance run` as a real process: SIGTERM, SIGKILL and restart, two controllers at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.lease import ClusterLease
from pveapi.client import PveClient
from simulator import scenario as scenarios
from testkit.processes import free_port
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def real_time_sim() -> Iterator[RunningSimulator]:
    """The demo cluster in real time, with migrations of a few seconds each."""
    data = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    data["migration"] = {"bandwidth": "3GiB", "overhead_s": 3, "ha_delay_s": 1}
    with running_simulator(data, time_scale=1) as sim:
        yield sim


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "--config", str(config), "--log-level", "info", "--log-format", "json", "run", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait(condition: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _running_migration(sim: RunningSimulator) -> dict[str, Any] | None:
    return next((t for t in sim.tasks() if t["type"] == "qmigrate" and t["status"] == "running"), None)


def _events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every log line is a JSON event


def _config(tmp_path: Path, sim: RunningSimulator, **run: Any) -> Path:
    return write_config(
        tmp_path, sim,
        run={"automation": "automatic", "hold_time": 0, "interval": "1h", "listen": f"127.0.0.1:{free_port()}", **run},
        apply={"poll_interval": 0.3, "max_in_flight": 1},
        policy={"max_moves": 2},  # a short plan keeps the real-time test short
    )


def test_sigterm_lets_the_running_migration_finish_and_starts_nothing_new(real_time_sim: RunningSimulator, tmp_path: Path) -> None:
    config = _config(tmp_path, real_time_sim)
    first = _start(config)
    try:
        task = _wait(lambda: _running_migration(real_time_sim))
        # A second controller on the same state file refuses to migrate and names the first.
        second = subprocess.run(
            [sys.executable, "-m", "controller.cli", "--config", str(config), "run", "--once"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert second.stdout.startswith("skipped: another pvebalance controller holds")
        assert f"(pid {first.pid} on " in second.stdout
        asked_to_stop = real_time_sim.clock()
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    ended = next(t for t in real_time_sim.tasks() if t["upid"] == task["upid"])
    assert ended["status"] == "stopped" and ended["exitstatus"] == "OK"  # left to finish, and watched to its end
    later = [t for t in real_time_sim.tasks() if t["type"] == "qmigrate" and t["starttime"] > asked_to_stop + 1]
    assert later == []
    events = _events(err)
    names = [e["event"] for e in events]
    assert "migration.started" in names and "migration.succeeded" in names and names[-1] == "loop.stopped"
    state = json.loads((tmp_path / "state.json").read_text())
    assert task["id"] in state["moved"]
    pools = PveClient(real_time_sim.connection_settings()).get("/pools")
    assert "pvebalance-lease" not in {p["poolid"] for p in pools}  # given back on the way out


def test_killed_mid_migration_and_restarted_keeps_cooldowns(real_time_sim: RunningSimulator, tmp_path: Path) -> None:
    config = _config(tmp_path, real_time_sim, lease_ttl="2s")
    first = _start(config)
    try:
        task = _wait(lambda: _running_migration(real_time_sim))
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert task["id"] in json.loads((tmp_path / "state.json").read_text())["moved"]
    _wait(lambda: next(t for t in real_time_sim.tasks() if t["upid"] == task["upid"])["status"] == "stopped")
    lease = ClusterLease(PveClient(real_time_sim.connection_settings()), "pvebalance-lease", 2)
    dead = lease.current()
    _wait(lambda: dead is None or lease.expired(dead, time.time()))  # the killed one never gave it back
    again = subprocess.run(
        [sys.executable, "-m", "controller.cli", "--config", str(config), "run", "--once"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert again.returncode == 0 and again.stdout.startswith("applied: "), again.stdout + again.stderr[-2000:]
    attempts = [t for t in real_time_sim.tasks() if t["id"] == task["id"] and t["type"] == "qmigrate"]
    assert len(attempts) == 1  # in its cooldown: not moved again after the restart
    state = real_time_sim.state()
    seen = [v for n in state["nodes"] for v in n["guests"]]
    assert sorted(seen) == sorted(g["vmid"] for g in state["guests"])
    assert all(n["online"] for n in state["nodes"])
