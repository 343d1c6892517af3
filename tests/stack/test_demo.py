"""`pvebalance-demo`, the README's main command, run as a user runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from demoloop.cli import main

DEMO = str(Path(sys.executable).parent / "pvebalance-demo")


class Output:
    """A process' stdout, collected line by line in the background."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.5)
        raise AssertionError(f"{text!r} not printed within {timeout:.0f} s:\n" + "\n".join(self.lines[-40:]))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _series(prometheus: str, expr: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"])


def _instants(prometheus: str, selector: str) -> list[float]:
    """The timestamps of the one series `selector` picks, over the last two hours."""
    (series,) = _series(prometheus, f"{selector}[2h]")
    return [float(at) for at, _ in series["values"]]


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=3, verify=False)
        return True
    except requests.RequestException:
        return False


def test_demo_applies_the_plan_shows_the_cluster_balanced_and_stops_everything_on_sigterm() -> None:
    process = subprocess.Popen([DEMO, "--hours", "1", "--apply", "--stay"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    out = Output(process)
    try:
        out.wait_for("Ctrl-C stops it all", timeout=600)
        prometheus = re.search(r"^prometheus\s+(\S+)", out.text, re.M)
        exporter = re.search(r"^exporter\s+http://(\S+)/metrics", out.text, re.M)
        assert prometheus and exporter, out.text
        history = _series(prometheus.group(1), "count_over_time(pvebalance:cluster_imbalance:ratio[55m] offset 5m)")
        # The recording rules have the backfilled hour, not only the minutes since Prometheus started.
        assert history and float(history[0]["value"][1]) >= 10, history
        # ... at every 5-minute step of it, in each of the three passes (a rule reading another
        # rule's series finds them at its own instants).
        raw = _instants(prometheus.group(1), 'pve_up{id="node/pve1"}')
        end = raw[0] + 3600  # the backfilled hour's last sample; live samples follow
        recorded = {rule: len([t for t in _instants(prometheus.group(1), rule) if t <= end]) for rule in
                    ('pvebalance:node_up:bool{node="pve1"}', 'pvebalance:node_load:ratio{node="pve1"}',
                     "pvebalance:cluster_imbalance:ratio")}
        assert len([t for t in raw if t <= end]) == 13 and set(recorded.values()) <= {12, 13}, recorded
        assert len(set(recorded.values())) == 1, recorded
        # Backfilled and live series carry the labels a real stack has: dashboard 10347's only
        # variable, label_values(pve_node_info, instance), has the exporter as its value...
        instances = requests.get(f"{prometheus.group(1)}/api/v1/label/instance/values",
                                 params={"match[]": "pve_node_info"}, timeout=10).json()["data"]
        assert instances == [exporter.group(1)], instances
        # ... over the whole backfilled hour, so live samples continue the history.
        backfilled = _series(prometheus.group(1), f'count_over_time(pve_node_info{{instance="{exporter.group(1)}", '
                                                  f'job="pvebalance-exporter"}}[55m] offset 5m)')
        assert backfilled and min(float(s["value"][1]) for s in backfilled) >= 10, backfilled
        # The operator API, called as the demo says: its curl line answers with the plan.
        curl = re.search(r"^  (curl .*/api/v1/plan)$", out.text, re.M)
        assert curl, out.text
        called = subprocess.run(["bash", "-c", curl.group(1)], capture_output=True, text=True, timeout=60)
        assert called.returncode == 0 and "plan_id" in json.loads(called.stdout), called
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    text = out.text
    urls = {name: re.search(rf"^{name}\s+(\S+)", text, re.M) for name in ("simulator", "exporter", "prometheus", "controller")}
    assert all(urls.values()), text
    workdir = re.search(r"configs and logs in (\S+)\.", text)
    assert workdir is not None, text

    assert "== pvebalance plan (1h averages from Prometheus) ==" in text
    # Progress of the long steps, as lines (the output is a pipe, not a terminal).
    assert re.search(r"^backfill: \d+/13 steps \(\d+%\)", text, re.M), text
    assert re.search(r"^recording rules: \d/\d passes", text, re.M), text
    assert re.search(r"^apply: \d+/\d+ moves \(\d+%\), \d+s elapsed - done", text, re.M), text
    # Estimates in cluster time, and what they mean on a simulator that runs x60.
    assert re.search(r"^\(times above are simulated cluster time; this simulator runs x60, so the estimated "
                     r"\S+ takes about \d+s of wall time here\)", text, re.M), text
    assert re.search(r"^\d+ succeeded, 0 failed", text, re.M), text
    before, after = (float(v) for v in re.findall(r"^  imbalance (\d\.\d+)", text, re.M)[:2])
    assert after < before / 2, text
    # Everything it started is gone, and so is its working directory.
    for name, match in urls.items():
        assert match is not None
        assert not _answers(match.group(1)), f"{name} still answers after the demo stopped"
    assert not Path(workdir.group(1)).exists()


def test_demo_without_prometheus_plans_on_live_figures_and_says_so(tmp_path: Path) -> None:
    # A PATH with no Prometheus: only openssl, which the simulator needs for its certificate.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    openssl = shutil.which("openssl")
    assert openssl is not None
    (bin_dir / "openssl").symlink_to(openssl)
    env = {**os.environ, "PATH": str(bin_dir)}
    done = subprocess.run([DEMO], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "prometheus  NOT FOUND on the PATH (Debian: apt-get install prometheus)" in done.stdout
    assert "== pvebalance plan (live figures) ==" in done.stdout
    assert re.search(r"^Moves \(\d+, in this order", done.stdout, re.M), done.stdout


@pytest.mark.parametrize(("flag", "says"), [
    (["--hours", "nan"], "--hours: expected a number from 0 to 8784, got nan"),
    (["--hours", "1e308"], "--hours: expected a number from 0 to 8784"),
    (["--step", "inf"], "--step: expected a number from 0 to 86400, got inf"),
    (["--time-scale", "nan"], "--time-scale: expected a number from 0"),
    (["--hours", "0"], "--hours and --step must be positive"),
])
def test_a_bad_demo_flag_is_one_line_before_anything_starts(flag: list[str], says: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(flag) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pvebalance-demo: {says}") and err.strip().count("\n") == 0, err
