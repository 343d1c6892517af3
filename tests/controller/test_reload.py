"""SIGHUP on `pvebalance run` (systemctl reload): a new config from the next cycle; a bad one is
one error event and the old one goes on."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from testkit.processes import free_port
from tests.controller.conftest import write_config
from tests.controller.test_run_process import ROOT, _events, _wait
from tests.support.sim import RunningSimulator, running_simulator

WINDOWS = {"weekly": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "24:00"}]}


def _health(url: str) -> dict[str, Any]:
    health: dict[str, Any] = requests.get(f"{url}/health", timeout=10).json()
    return health


def _logged(log: Path, event: str) -> list[dict[str, Any]]:
    return [e for e in _events(log.read_text()) if e["event"] == event]


def test_sighup_applies_a_new_config_and_keeps_the_old_one_when_the_new_is_bad(tmp_path: Path) -> None:
    with running_simulator("demo", time_scale=0) as sim:
        _reload_run(sim, tmp_path)


def _reload_run(sim: RunningSimulator, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    url = f"http://{listen}"
    run = {"automation": "manual", "interval": "1h", "listen": listen}
    config = write_config(tmp_path, sim, run=run)
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "--config", str(config), "--log-format", "json", "run"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, text=True,
        )
    try:
        first = _wait(lambda: _up(url) and _health(url)["last_cycle"])
        assert first["result"] == "planned" and _health(url)["migration_window"] is None

        # A good new file: the next cycle (started at once) runs on it.
        write_config(tmp_path, sim, run={**run, "windows": WINDOWS})
        process.send_signal(signal.SIGHUP)
        window = _wait(lambda: _health(url)["migration_window"])
        assert window["inside"] is True and window["timezone"] == "UTC"
        assert len(_logged(log, "config.reloaded")) == 1
        _wait(lambda: [e for e in _logged(log, "cycle.end") if e["trigger"] == "reload"])

        # A bad file, then one changing what only a restart changes: one error each, nothing swapped.
        config.write_text(config.read_text().replace("interval: 1h", "interval: -5m"))
        process.send_signal(signal.SIGHUP)
        failed = _wait(lambda: _logged(log, "config.reload_failed"))
        assert len(failed) == 1 and "run.interval" in failed[0]["error"] and failed[0]["level"] == "error", failed
        write_config(tmp_path, sim, run={**run, "windows": WINDOWS, "listen": f"127.0.0.1:{free_port()}"})
        process.send_signal(signal.SIGHUP)
        failed = _wait(lambda: _logged(log, "config.reload_failed")[1:])
        assert "run.listen change only with a restart" in failed[0]["error"], failed
        assert _health(url)["migration_window"] is not None  # still the good file's windows
        assert len(_logged(log, "config.reloaded")) == 1
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert sim.token_value not in log.read_text()
    assert all(json.loads(line) for line in log.read_text().splitlines())  # every line an event, no traceback


def _up(url: str) -> bool:
    try:
        requests.get(f"{url}/health", timeout=2)
    except requests.ConnectionError:
        return False
    return True
