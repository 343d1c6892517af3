"""`--version` on every program: its name and the installed package's version, exit 0."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("module", "prog"), [
    ("controller.cli", "pvebalance"), ("exporter.cli", "pvebalance-exporter"), ("simulator.cli", "pvebalance-sim"),
])
def test_version_names_the_program_and_the_installed_version(module: str, prog: str) -> None:
    done = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{prog} {version('pvebalance')}\n", "")
