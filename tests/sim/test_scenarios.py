"""Scenarios: the CLI, bad input as one clear line, captures of a real cluster, the large cluster."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from simulator.scenario import load_scenario
from tests.sim.conftest import token_api
from tests.support.sim import running_simulator

ROOT = Path(__file__).resolve().parents[2]
GOOD_NODE = "nodes: [{name: pve1, cores: 8, memory: 32GiB}]\n"


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simulator.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("unknown-node.yaml", GOOD_NODE + "guests: [{vmid: 100, node: pve9}]\n",
         "guest 100 is on unknown node 'pve9'; known nodes: pve1"),
        ("duplicate.yaml", GOOD_NODE + "guests: [{vmid: 100, node: pve1}, {vmid: 100, node: pve1}]\n",
         "duplicate vmid 100"),
        ("too-big.yaml", GOOD_NODE + "guests: [{vmid: 100, node: pve1, memory: 64GiB}]\n",
         "guest 100 needs 64 GiB of memory but the largest node (pve1) has 32 GiB"),
        ("malformed.yaml", GOOD_NODE + "guests: [{vmid: 100, node: pve1\n", "invalid YAML at line"),
        ("malformed.json", '[{"type": "node", "node": "pve1",', "invalid JSON at line 1"),
        ("bad-profile.yaml", GOOD_NODE + "guests: [{vmid: 100, node: pve1, cpu: {profile: wavy}}]\n",
         "guest 100.cpu.profile: expected one of constant, diurnal, bursty, trending, idle, got 'wavy'"),
        ("no-nodes.yaml", "guests: []\n", "needs at least one node"),
        ("bad-size.yaml", "nodes: [{name: pve1, cores: 8, memory: lots}]\n", "node pve1.memory: expected a size such as 8GiB or 512MiB (binary; 8GB is decimal), at most 1EiB, got 'lots'"),
        ("not-capture.json", '[{"type": "qemu", "vmid": "x", "node": "a"}]', "not a /cluster/resources capture"),
        ("wrapped-number.json", '{"data": 5}', "`data` is 5, not a list; a capture is the list GET /cluster/resources answers"),
        ("yes-start.yaml", "start: yes\n" + GOOD_NODE, "start: expected an epoch or an ISO time"),
        ("list-start.yaml", "start: [1]\n" + GOOD_NODE, "start: expected an epoch or an ISO time"),
        ("replica-guest.yaml", GOOD_NODE + "replication: [{guest: 100, target: pve1}]\n",
         "replication[0].guest: no guest 100 in the scenario"),
        ("replica-schedule.yaml", "nodes: [{name: pve1, cores: 8, memory: 32GiB}, {name: pve2, cores: 8, memory: 32GiB}]\n"
         "guests: [{vmid: 100, node: pve1}]\nreplication: [{guest: 100, target: pve2, schedule: daily}]\n",
         "replication[0].schedule: only */N (every N minutes) is modelled"),
        ("qdevice-state.yaml", GOOD_NODE + "qdevice: {host: q1, state: up}\n",
         "qdevice.state: expected one of Connected, Connect failed, Disconnected"),
    ],
)
def test_bad_scenario_is_one_clear_line_and_exit_2(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = run_cli("--scenario", str(path), "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"pvebalance-sim: scenario {name}") and message in lines[0]


def test_unknown_builtin_and_bad_options_are_one_line() -> None:
    result = run_cli("--scenario", "nope")
    assert result.returncode == 2 and result.stderr.strip() == (
        "pvebalance-sim: scenario nope: no such file or built-in scenario (built-in: demo, large)")
    result = run_cli("--token", "root@pam=x", "--port", "0")
    assert result.returncode == 2 and "expected USER@REALM!NAME=VALUE" in result.stderr


def test_cli_serves_the_demo_until_terminated(tmp_path: Path) -> None:
    faults = tmp_path / "faults.yaml"
    faults.write_text("- {type: error, endpoint: GET /nodes, status: 500, message: boom}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--scenario", "demo", "--port", "0", "--log-format", "json",
         "--time-scale", "0", "--token", "root@pam!cli=s3cret", "--user", "ops@pve=pa55", "--faults", str(faults)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        started = json.loads(process.stderr.readline())
        assert started["event"] == "sim_started" and "s3cret" not in json.dumps(started)
        headers = {"Authorization": "PVEAPIToken=root@pam!cli=s3cret"}
        answer = requests.get(f"{started['url']}/version", headers=headers, verify=started["cert"], timeout=10)
        assert answer.json()["data"]["version"] == "9.0.10"
        failing = requests.get(f"{started['url']}/nodes", headers=headers, verify=started["cert"], timeout=10)
        assert (failing.status_code, failing.reason) == (500, "boom")
        login = requests.post(f"{started['url']}/access/ticket", data={"username": "ops@pve", "password": "pa55"},
                              verify=started["cert"], timeout=10)
        assert login.json()["data"]["username"] == "ops@pve"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


CAPTURE = [
    {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "cpu": 0.25, "maxcpu": 16,
     "mem": 20 * 1024**3, "maxmem": 64 * 1024**3, "disk": 1, "maxdisk": 100 * 1024**3, "uptime": 1000, "level": ""},
    {"id": "node/pve2", "type": "node", "node": "pve2", "status": "offline", "maxcpu": 16, "maxmem": 64 * 1024**3,
     "maxdisk": 100 * 1024**3, "level": ""},
    {"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "name": "web01", "status": "running",
     "template": 0, "cpu": 0.5, "maxcpu": 4, "mem": 4 * 1024**3, "maxmem": 8 * 1024**3, "disk": 0,
     "maxdisk": 32 * 1024**3, "tags": "prod;web", "pool": "prod", "hastate": "started", "uptime": 500},
    {"id": "lxc/101", "type": "lxc", "vmid": 101, "node": "pve2", "name": "ct01", "status": "stopped",
     "template": 0, "cpu": 0, "maxcpu": 2, "mem": 0, "maxmem": 512 * 1024**2, "disk": 0, "maxdisk": 8 * 1024**3},
    {"id": "storage/pve1/local-lvm", "type": "storage", "storage": "local-lvm", "node": "pve1",
     "plugintype": "lvmthin", "status": "available", "shared": 0, "content": "images,rootdir", "disk": 1,
     "maxdisk": 500 * 1024**3},
    {"id": "storage/pve2/local-lvm", "type": "storage", "storage": "local-lvm", "node": "pve2",
     "plugintype": "lvmthin", "status": "available", "shared": 0, "content": "images,rootdir", "disk": 1,
     "maxdisk": 500 * 1024**3},
    {"id": "/pool/prod", "type": "pool", "pool": "prod"},
]


@pytest.mark.parametrize("wrap", [False, True], ids=["bare-list", "data-envelope"])
def test_capture_becomes_a_cluster_with_its_current_figures(tmp_path: Path, wrap: bool) -> None:
    path = tmp_path / "capture.json"
    path.write_text(json.dumps({"data": CAPTURE} if wrap else CAPTURE))
    with running_simulator(str(path), time_scale=0) as sim:
        api = token_api(sim)
        by_id = {r["id"]: r for r in api.cluster.resources.get()}
        assert by_id["qemu/100"]["cpu"] == 0.5 and by_id["qemu/100"]["mem"] == 4 * 1024**3
        assert by_id["qemu/100"]["tags"] == "prod;web" and by_id["qemu/100"]["pool"] == "prod"
        assert by_id["qemu/100"]["hastate"] == "started"
        assert by_id["node/pve1"]["cpu"] == pytest.approx(0.25) and by_id["node/pve1"]["mem"] == 20 * 1024**3
        assert by_id["node/pve2"]["status"] == "offline" and by_id["lxc/101"]["status"] == "unknown"
        sim.advance(3600)
        assert api.cluster.resources.get(type="vm")[0]["cpu"] == 0.5  # constant loads


def test_large_scenario_serves_ten_thousand_guests() -> None:
    scenario = load_scenario("large")
    assert (len(scenario.nodes), len(scenario.guests)) == (64, 10_000)
    assert load_scenario("large") == scenario  # generated deterministically
    with running_simulator(scenario, time_scale=0) as sim:
        api = token_api(sim)
        resources = api.cluster.resources.get()
        assert sum(r["type"] in ("qemu", "lxc") for r in resources) == 10_000
        assert sum(r["type"] == "node" for r in resources) == 64
        assert len(api.nodes("node01").qemu.get()) + len(api.nodes("node01").lxc.get()) == 157


def test_scenario_from_a_dict_gets_defaults() -> None:
    scenario = load_scenario({"nodes": [{"name": "a", "cores": 2, "memory": "4GiB"}],
                              "guests": [{"vmid": 100, "node": "a", "tags": "B;a"}]})
    guest = scenario.guests[0]
    assert guest.tags == ("a", "b") and guest.storage == "local-lvm" and guest.name == "vm100"
    assert guest.status == "running" and guest.memory == 2 * 1024**3
