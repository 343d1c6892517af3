"""ProxLB 2.3 (a peer we measure against) runs its dry-run against the simulator without error.

It is installed from bench/requirements.txt by scripts/test.sh and run as its own process, as
a user would, trusting the simulator's certificate through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.sim import running_simulator

IMBALANCED = {
    "nodes": [{"name": "hot", "cores": 8, "memory": "32GiB", "version": "9.0.10"},
              {"name": "cold", "cores": 8, "memory": "32GiB", "version": "9.0.10"}],
    "guests": [
        {"vmid": 100 + i, "name": f"busy{i}", "node": "hot", "cpus": 2, "memory": "6GiB",
         "cpu": {"profile": "constant", "level": 0.8}, "mem": {"profile": "constant", "level": 0.9}}
        for i in range(4)
    ] + [{"vmid": 200, "name": "quiet", "node": "cold", "type": "lxc", "cpus": 1, "memory": "1GiB"}],
    "pools": [{"id": "prod"}],
}


def test_proxlb_dry_run_plans_moves_off_the_hot_node(tmp_path: Path) -> None:
    with running_simulator(IMBALANCED, time_scale=0) as sim:
        config = {
            "proxmox_api": {"hosts": [sim.host], "user": sim.token_user, "token_id": sim.token_name,
                            "token_secret": sim.token_value, "ssl_verification": True, "timeout": 10},
            "proxmox_cluster": {},
            "balancing": {"enable": True, "balance_types": ["vm", "ct"], "method": "memory", "mode": "used"},
            "service": {"daemon": False, "log_level": "WARNING"},
        }
        path = tmp_path / "proxlb.yaml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run([sys.executable, "-m", "proxlb", "-c", str(path), "--dry-run", "--json"],
                                capture_output=True, text=True, timeout=300, check=False,
                                env={**os.environ, "REQUESTS_CA_BUNDLE": sim.ca_path})
        assert result.returncode == 0, result.stderr[-2000:]
        plan = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
        guests = plan["guests"]
        assert set(guests) == {"busy0", "busy1", "busy2", "busy3", "quiet"}
        assert any(g["node_target"] == "cold" for g in guests.values() if g["node_current"] == "hot")
        counts = sim.request_counts()
        assert counts["GET /nodes/{node}/qemu/{vmid}/rrddata"] >= 8 and counts["GET /access/permissions"] == 1
        assert not any(t["type"].endswith("migrate") for t in sim.tasks())  # a dry run moves nothing
