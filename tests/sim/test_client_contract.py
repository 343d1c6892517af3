"""The client side of the contract: what our controller, exporter and pveapi send is valid for
Proxmox VE 9.1.3's schema.

The simulator checks every request against its trimmed copy of that schema (the one home of
those rules) and records each refusal, a parameter the schema rejects or a method and path it
lacks (tests/sim/test_faults_admin.py tests the recorder). This test drives our clients through
their calls against one simulator and expects none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main as controller_main
from controller.config import load_config
from controller.cycle import run_cycle
from controller.executor import Executor
from controller.lease import ClusterLease
from exporter.collectors import CollectorOptions
from exporter.http import ServeOptions
from pveapi.client import PveClient
from pveapi.tasks import task_status
from tests.controller.conftest import write_config
from tests.exporter.conftest import RunningExporter, module_block
from tests.exporter.conftest import write_config as write_exporter_config
from tests.support.sim import RunningSimulator, running_simulator

# Calls the drive below must make, so a client change that stops one is noticed here too.
EXPECTED = {
    "GET /version", "GET /access/permissions", "GET /cluster/resources", "GET /cluster/status", "GET /cluster/tasks",
    "GET /cluster/options", "GET /cluster/ha/status/current", "GET /cluster/ha/rules", "GET /nodes/{node}/status",
    "GET /nodes/{node}/qemu/{vmid}/migrate", "POST /nodes/{node}/qemu/{vmid}/migrate", "GET /nodes/{node}/time",
    "GET /nodes/{node}/tasks", "GET /nodes/{node}/tasks/{upid}/status", "GET /nodes/{node}/rrddata",
    "GET /nodes/{node}/qemu/{vmid}/config", "GET /nodes/{node}/lxc/{vmid}/config",
    "GET /pools", "POST /pools", "PUT /pools", "DELETE /pools",
}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator("demo", time_scale=600) as running:
        yield running


def _controller(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str]:
    code = controller_main(["--config", str(config), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _execute(sim: RunningSimulator, config_path: Path) -> None:
    """One planned cycle carried out by the controller's executor, virtual time passing per poll."""
    config = load_config(config_path)
    client = PveClient(config.proxmox)
    cycle = run_cycle(client, None, config)
    report = Executor(client, cycle.rules, config.policy, config.apply, sleep=sim.advance).apply(cycle.plan, cycle.model)
    _no_refusals(sim, "a cycle (observe, plan, execute)")
    assert report.outcomes and report.count("succeeded") == len(report.outcomes), report.outcomes


def _no_refusals(sim: RunningSimulator, step: str) -> None:
    assert sim.schema_refusals() == {}, f"{step} sent what PVE's schema refuses"


def test_controller_exporter_and_pveapi_send_only_what_the_schema_allows(
    sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.reset_request_counts()
    # With time frozen between polls: a migrate request whose answer is lost, followed to its
    # task by the node's clock, and an HA guest (hamigrate, then the HA manager's task looked up).
    sim.set_time_scale(0)
    sim.inject_fault({"type": "hang", "endpoint": "POST /nodes/{node}/qemu/{vmid}/migrate", "seconds": 2, "count": 1})
    _execute(sim, write_config(tmp_path, sim, proxmox={"timeout": 1}, policy={"max_moves": 1}))
    _execute(sim, write_config(tmp_path, sim, policy={"max_moves": 0},
                               rules={"node_affinity": [{"name": "ha-to-pve5", "vmids": [122], "nodes": ["pve5"]}]}))
    sim.set_time_scale(600)
    config = write_config(tmp_path, sim, policy={"max_moves": 2}, apply={"poll_interval": 0.1},
                          run={"automation": "automatic", "hold_time": 0})
    for args in (["check"], ["plan", "--save", str(tmp_path / "plan.json")], ["apply", "--plan", str(tmp_path / "plan.json")],
                 ["run", "--once"]):
        code, output = _controller(capsys, config, *args)
        _no_refusals(sim, f"pvebalance {args[0]}")
        assert code == 0, (args, output)
    lease = ClusterLease(PveClient(sim.connection_settings()), "pvebalance-lease", 60)
    lease.acquire()
    lease.renew()
    lease.release()
    _no_refusals(sim, "the lease")

    exporter_config = write_exporter_config(tmp_path / "exporter.yml", {"default": module_block(sim, tmp_path / "token")})
    exporter = RunningExporter(exporter_config, ServeOptions(CollectorOptions(pressure=True, config=True), max_workers=4))
    try:
        assert exporter.get("/pve", target=sim.host).status_code == 200
        assert exporter.get("/metrics").status_code == 200
    finally:
        exporter.stop()
    _no_refusals(sim, "the exporter")

    client = PveClient(sim.connection_settings())
    upid = next(t["upid"] for t in sim.tasks() if t["type"] == "qmigrate")
    assert task_status(client, upid).ok and client.resources().nodes

    _no_refusals(sim, "pveapi")
    missing = EXPECTED - set(sim.request_counts())
    assert not missing, f"the drive no longer makes these calls: {sorted(missing)}"
