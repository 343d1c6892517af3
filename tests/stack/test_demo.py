"""`pvebalance-demo`, the README's main command, run as a user runs it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import requests

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
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    text = out.text
    urls = {name: re.search(rf"^{name}\s+(\S+)", text, re.M) for name in ("simulator", "exporter", "prometheus")}
    assert all(urls.values()), text
    workdir = re.search(r"configs and logs in (\S+)\.", text)
    assert workdir is not None, text

    assert "== pvebalance plan (1h averages from Prometheus) ==" in text
    assert re.search(r"^\d+ succeeded, 0 failed", text, re.M), text
    before, after = (float(v) for v in re.findall(r"^  imbalance (\d\.\d+)", text, re.M)[:2])
    assert after < before / 2, text
    # Everything it started is gone, and so is its working directory.
    for name, match in urls.items():
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
