"""The benchmarks' commands (README, docs): a bad option is one line and exit 2, before any run starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, message", [
    (["bench/exporter_phases.py", "--rounds", "0"], "--rounds: expected a whole number of at least 1, got '0'"),
    (["bench/exporter.py", "--sizes", "500,x"], "--sizes: expected whole numbers of at least 1 separated by commas"),
    (["bench/exporter.py", "--crowd", "-1"], "--crowd: expected a whole number of at least 0 (0: skip)"),
    (["bench/exporter.py", "--crowd-seconds", "nan"], "--crowd-seconds: expected a number of seconds above 0"),
    (["bench/exporter.py", "--output", "/proc/results.md"], "--output: cannot write results to '/proc/results.md'"),
    (["bench/controller.py", "--port", "70000"], "--port: expected a port from 1 to 65535"),
    (["bench/sim_bench.py", "--runs", "x"], "--runs: expected a whole number of at least 1, got 'x'"),
])
def test_a_bad_bench_option_is_one_line(argv: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr.strip().splitlines()[-1]
