"""`pvebalance apply`'s progress while a migration runs: how much the task has copied, read
from the migration task's log as PVE writes it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from pveapi.client import PveClient
from simulator import scenario as scenarios
from tests.controller.conftest import write_config
from tests.support.sim import running_simulator

ROOT = Path(__file__).resolve().parents[2]
TRANSFERRED = re.compile(r"qemu/(\d+) \S+ pve\d -> pve\d running \d+s, transferred (\d+\.\d) GiB of \d+\.\d GiB")


def test_apply_shows_what_the_migration_task_has_transferred(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    data["migration"] = {"bandwidth": "2GiB", "overhead_s": 1, "ha_delay_s": 1}  # the first VM's 12-27 GiB: 6-14 s of RAM
    with running_simulator(data, time_scale=1) as sim:
        config = write_config(tmp_path, sim, policy={"max_moves": 1}, apply={"poll_interval": 0.5})
        done = subprocess.run(
            [sys.executable, "-m", "controller.cli", "--config", str(config), "apply"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        task = min((t for t in sim.tasks() if t["type"] == "qmigrate"), key=lambda t: t["starttime"])
        log = PveClient(sim.connection_settings()).get(f"/nodes/pve1/tasks/{task['upid']}/log", limit=100)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    # A line every 5 s while the task runs (stdout is a pipe here): later ones say more.
    shown = [(int(found[1]), float(found[2])) for found in TRANSFERRED.finditer(done.stdout)]
    by_guest = {vmid: [copied for v, copied in shown if v == vmid] for vmid, _ in shown}
    assert len(shown) >= 2 and any(copied > 0 for _, copied in shown), done.stdout
    assert all(seen == sorted(seen) for seen in by_guest.values()), done.stdout
    lines = [entry["t"] for entry in log]
    active = [line for line in lines if "migration active, transferred" in line]
    assert active and re.search(r"migration active, transferred 0 B of \d+\.\d GiB VM-state, 2\.0 GiB/s$", active[0]), lines
    assert lines[-2:] == [lines[-2], "TASK OK"] and lines[-2].endswith("migration finished successfully")
