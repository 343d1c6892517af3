"""`pvebalance check` reports every rule and tag problem `pvebalance plan` would, in its words."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from simulator import scenario as scenarios
from tests.controller.conftest import write_config
from tests.support.sim import running_simulator

ROOT = Path(__file__).resolve().parents[2]


def _pvebalance(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_pin_tag_naming_an_unknown_node_is_a_check_problem_as_it_is_a_plan_problem(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    pinned = next(g for g in data["guests"] if g["vmid"] == 131)
    pinned["tags"] = [tag.replace("plb_pin_pve3", "plb_pin_pve9") for tag in pinned["tags"]]  # a typo: no pve9
    with running_simulator(data, time_scale=0) as sim:
        config = write_config(tmp_path, sim)
        plan = _pvebalance(config, "plan", "--output", "json")
        check = _pvebalance(config, "check")
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = json.loads(plan.stdout)["problems"]
    assert any("(pve9)" in p for p in planned), planned
    reported = [line.removeprefix("problem: rules: ") for line in check.stdout.splitlines() if line.startswith("problem: ")]
    assert check.returncode == 1 and reported == planned, check.stdout
    assert "131 stay where they are until it is fixed" in " ".join(reported)
