"""The exporter's credential check at start: one log line, and it serves whatever the answer."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from testkit.processes import free_port
from tests.exporter.conftest import module_block
from tests.exporter.test_secrets_and_cli import WRONG_SECRET, exporter_process, write
from tests.support.sim import RunningSimulator


def _events(logs: str) -> dict[str, dict[str, object]]:
    lines = (json.loads(line) for line in logs.splitlines() if line.startswith("{"))
    return {str(e["event"]): e for e in lines if str(e["event"]).startswith("credentials_")}


def test_a_good_token_is_confirmed_at_start(sim: RunningSimulator, tmp_path: Path) -> None:
    config = write(tmp_path / "good.yml", {"default": module_block(sim, tmp_path / "token")})
    with exporter_process(config) as (_url, stop):
        events = _events(stop())
    assert list(events) == ["credentials_ok"] and events["credentials_ok"]["pve_version"], events


def test_a_wrong_token_is_one_line_at_start_and_the_exporter_still_serves(sim: RunningSimulator, tmp_path: Path) -> None:
    block = module_block(sim, tmp_path / "token")
    (tmp_path / "token").write_text(WRONG_SECRET)
    config = write(tmp_path / "wrong.yml", {"default": block})
    with exporter_process(config) as (url, stop):
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        logs = stop()
    events = _events(logs)
    assert list(events) == ["credentials_refused"], events
    refused = events["credentials_refused"]
    assert refused["level"] == "error" and "401" in str(refused["error"]) and "scrape_success 0" in str(refused["hint"])
    assert WRONG_SECRET not in logs


def test_an_unreachable_cluster_does_not_stop_the_start(sim: RunningSimulator, tmp_path: Path) -> None:
    block = {**module_block(sim, tmp_path / "token"), "host": f"127.0.0.1:{free_port()}", "timeout": 2}
    config = write(tmp_path / "away.yml", {"default": block})
    with exporter_process(config) as (url, stop):
        assert requests.get(f"{url}/health", timeout=10).status_code == 200
        events = _events(stop())
    assert list(events) == ["credentials_unchecked"], events
