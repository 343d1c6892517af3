"""SIGHUP on the exporter (systemctl reload): the config and its secrets files again, for the
next scrape; a bad file is one error event and the exporter goes on with what it had."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.exporter.conftest import module_block
from tests.exporter.test_secrets_and_cli import WRONG_SECRET, exporter_with_process, write
from tests.support.sim import RunningSimulator


def _wait(condition: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
    return value


def _events(log: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == name]


def test_sighup_rereads_the_token_file_and_keeps_the_old_config_when_the_new_is_bad(sim: RunningSimulator, tmp_path: Path) -> None:
    token = tmp_path / "token"
    block = module_block(sim, token)
    token.write_text(WRONG_SECRET)
    config = write(tmp_path / "exporter.yml", {"default": block})
    log = tmp_path / "exporter.log"
    success = f'pvebalance_exporter_scrape_success{{cluster="{sim.host}"}} '
    with exporter_with_process(config, log=log) as (url, stop, process):
        assert success + "0.0" in requests.get(f"{url}/metrics", timeout=60).text

        token.write_text(sim.token_value)  # the token fixed: a reload, no restart
        process.send_signal(signal.SIGHUP)
        _wait(lambda: _events(log, "config_reloaded"))
        assert success + "1.0" in requests.get(f"{url}/metrics", timeout=60).text

        config.write_text("default: [not, a, module]\n")
        process.send_signal(signal.SIGHUP)
        failed = _wait(lambda: _events(log, "config_reload_failed"))
        assert success + "1.0" in requests.get(f"{url}/metrics", timeout=60).text  # still the good config
        logs = stop()
    assert len(failed) == 1 and failed[0]["level"] == "error" and str(config) in failed[0]["error"], failed
    assert len(_events(log, "config_reloaded")) == 1 and len(_events(log, "config_reload_failed")) == 1
    assert sim.token_value not in logs and WRONG_SECRET not in logs

