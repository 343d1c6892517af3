"""Fault injection and the admin API (/_sim/): what tests and benchmarks drive the simulator with."""

from __future__ import annotations

import time

import pytest
import requests
from proxmoxer.core import ResourceException

from tests.sim.conftest import token_api
from tests.support.sim import RunningSimulator, running_simulator


def test_request_counts_by_endpoint_template(demo: RunningSimulator) -> None:
    api = token_api(demo)
    demo.reset_request_counts()
    api.nodes("pve1").status.get()
    api.nodes("pve2").status.get()
    api.nodes("pve2").qemu(110).status.current.get()
    api.cluster.resources.get(type="vm")
    assert demo.request_counts() == {
        "GET /nodes/{node}/status": 2,
        "GET /nodes/{node}/qemu/{vmid}/status/current": 1,
        "GET /cluster/resources": 1,
    }
    assert demo.schema_refusals() == {}
    for call in (lambda: api.cluster.resources.get(typ="vm"), api.nodes("pve1").rrddata.get, api.nodes("pve1").bogus.get):
        with pytest.raises(ResourceException):
            call()
    assert demo.schema_refusals() == {
        "GET /cluster/resources: typ: property is not defined in schema and the schema does not allow additional properties": 1,
        "GET /nodes/{node}/rrddata: timeframe: property is missing and it is not optional": 1,
        "GET /nodes/{node}/bogus: Method 'GET /nodes/pve1/bogus' not implemented": 1,
    }
    demo.reset_request_counts()
    assert demo.request_counts() == {} and demo.schema_refusals() == {}


def test_clock_set_and_advance(demo: RunningSimulator) -> None:
    start = demo.clock()
    assert demo.advance(3600) == pytest.approx(start + 3600)
    assert demo.set_time(1_800_000_000) == 1_800_000_000
    assert demo.clock() == 1_800_000_000  # frozen: time_scale 0
    rows = token_api(demo).nodes("pve1").rrddata.get(timeframe="hour")
    assert rows[-1]["time"] == 1_800_000_000 // 60 * 60


def test_clock_runs_at_the_time_scale() -> None:
    with running_simulator("demo", time_scale=3600) as sim:
        first = sim.clock()
        time.sleep(0.2)
        assert sim.clock() - first >= 600  # 0.2 s real at 3600x


def test_state_and_node_actions(demo: RunningSimulator) -> None:
    state = demo.state()
    assert [n["name"] for n in state["nodes"]] == ["pve1", "pve2", "pve3", "pve4", "pve5"]
    guest = next(g for g in state["guests"] if g["vmid"] == 140)
    assert guest == {"vmid": 140, "type": "qemu", "name": "legacy01", "node": "pve4", "status": "running",
                     "lock": "backup", "hastate": None}
    demo.set_node_online("pve4", False)
    assert next(n for n in demo.state()["nodes"] if n["name"] == "pve4")["online"] is False
    demo.set_node_online("pve4", True)
    assert token_api(demo).nodes("pve4").status.get()["uptime"] < 5


def test_bad_admin_input_is_a_400_with_the_problem(demo: RunningSimulator) -> None:
    response = requests.post(f"{demo.admin_url}/clock", json={"advance": "soon"}, verify=demo.ca_path, timeout=10)
    assert response.status_code == 400 and "clock: advance: expected a number from 0 to 3.16224e+08, got 'soon'" in response.json()["error"]
    response = requests.post(f"{demo.admin_url}/faults", json={"type": "earthquake"}, verify=demo.ca_path, timeout=10)
    assert response.status_code == 400 and "earthquake" in response.json()["error"]
    response = requests.post(f"{demo.admin_url}/nodes/pve9/offline", verify=demo.ca_path, timeout=10)
    assert response.status_code == 400 and "unknown node 'pve9'" in response.json()["error"]


def test_admin_token_guards_the_admin_api() -> None:
    with running_simulator("demo", time_scale=0, admin_token="let-me-in") as sim:
        assert requests.get(f"{sim.admin_url}/state", verify=sim.ca_path, timeout=10).status_code == 401
        allowed = requests.get(f"{sim.admin_url}/state", verify=sim.ca_path, timeout=10,
                               headers={"Authorization": "Bearer let-me-in"})
        assert allowed.status_code == 200


def test_latency_fault_slows_only_its_endpoint(demo: RunningSimulator) -> None:
    demo.inject_fault({"type": "latency", "endpoint": "GET /cluster/resources", "seconds": 0.3})
    api = token_api(demo)
    started = time.monotonic()
    api.cluster.resources.get()
    slow = time.monotonic() - started
    started = time.monotonic()
    api.version.get()
    fast = time.monotonic() - started
    assert slow >= 0.3 > fast


def test_hung_request_times_the_client_out_until_cleared(demo: RunningSimulator) -> None:
    demo.inject_fault({"type": "hang", "endpoint": "GET /nodes/{node}/status"})
    api = token_api(demo)
    with pytest.raises(requests.Timeout):
        type(api)(demo.host, user=demo.token_user, token_name=demo.token_name, token_value=demo.token_value,
                  verify_ssl=demo.ca_path, timeout=0.5).nodes("pve1").status.get()
    assert api.version.get()  # other endpoints keep answering while one request hangs
    demo.clear_faults()
    assert api.nodes("pve1").status.get()["cpu"] > 0


def test_error_rate_is_seeded_and_count_limits_a_fault(demo: RunningSimulator) -> None:
    api = token_api(demo)
    demo.inject_fault({"type": "error", "endpoint": "GET /version", "status": 500, "rate": 0.5})
    outcomes: list[str | int] = []
    for _ in range(40):
        try:
            api.version.get()
            outcomes.append("ok")
        except ResourceException as exc:
            outcomes.append(exc.status_code)
    assert 5 < outcomes.count(500) < 35 and "ok" in outcomes
    demo.clear_faults()
    demo.inject_fault({"type": "error", "endpoint": "*", "status": 401, "count": 2})
    for _ in range(2):
        with pytest.raises(ResourceException) as caught:
            api.cluster.status.get()
        assert caught.value.status_code == 401
    assert api.cluster.status.get()
    assert requests.get(f"{demo.admin_url}/faults", verify=demo.ca_path, timeout=10).json() == {"faults": []}


def test_node_offline_and_back_at_given_times(demo: RunningSimulator) -> None:
    now = demo.clock()
    demo.inject_fault({"type": "node_offline", "node": "pve2", "after": 60, "for": 120})
    api = token_api(demo)
    assert api.nodes("pve2").status.get()
    demo.advance(90)
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve2").status.get()
    assert caught.value.status_code == 595
    rows = api.nodes("pve1").rrddata.get(timeframe="hour")  # other nodes keep their history
    assert "cpu" in rows[-1]
    demo.advance(120)
    assert api.nodes("pve2").status.get()["uptime"] < 60
    history = api.nodes("pve2").rrddata.get(timeframe="hour")
    gaps = [r["time"] for r in history if "cpu" not in r]
    assert gaps and all(now + 60 <= t <= now + 181 + 60 for t in gaps)  # offline rows have no values


def test_faults_given_at_start() -> None:
    with running_simulator("demo", time_scale=0, faults=[{"type": "error", "endpoint": "GET /nodes", "status": 500}]) as sim:
        with pytest.raises(ResourceException):
            token_api(sim).nodes.get()
