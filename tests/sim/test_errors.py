"""Each error shape a real PVE answers with: status, reason phrase (proxmoxer's `content`) and body."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException

from tests.sim.conftest import MONITOR_TOKEN, token_api
from tests.support.sim import RunningSimulator


def raw(sim: RunningSimulator, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{sim.url}{path}", verify=sim.ca_path, timeout=10, **kwargs)


def auth_header(sim: RunningSimulator) -> dict[str, str]:
    return {"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_value}"}


def test_401_wrong_secret_has_empty_body(frozen_demo: RunningSimulator) -> None:
    response = raw(frozen_demo, "GET", "/version", headers={"Authorization": f"PVEAPIToken={frozen_demo.token_id}=nope"})
    assert (response.status_code, response.reason, response.content) == (401, "Authentication failed!", b"")
    with pytest.raises(ResourceException) as caught:
        token_api(frozen_demo, token_value="wrong").version.get()
    assert caught.value.status_code == 401 and caught.value.content == "Authentication failed!"


def test_401_without_credentials_says_no_ticket(frozen_demo: RunningSimulator) -> None:
    response = raw(frozen_demo, "GET", "/cluster/resources")
    assert (response.status_code, response.reason, response.content) == (401, "No ticket", b"")


def test_wrong_password_fails_the_ticket_login(frozen_demo: RunningSimulator) -> None:
    with pytest.raises(AuthenticationError):
        ProxmoxAPI(frozen_demo.host, user="root@pam", password="wrong", verify_ssl=frozen_demo.ca_path)


def test_ticket_post_without_csrf_token_is_refused(frozen_demo: RunningSimulator) -> None:
    login = raw(frozen_demo, "POST", "/access/ticket", data={"username": "root@pam", "password": "demo"}).json()["data"]
    cookies = {"PVEAuthCookie": login["ticket"]}
    assert raw(frozen_demo, "GET", "/version", cookies=cookies).status_code == 200
    refused = raw(frozen_demo, "POST", "/nodes/pve1/qemu/100/migrate", cookies=cookies, data={"target": "pve2"})
    assert (refused.status_code, refused.reason, refused.content) == (401, "Permission denied - invalid csrf token", b"")


def test_403_names_path_and_privilege(frozen_demo: RunningSimulator) -> None:
    monitor = token_api(frozen_demo, user=MONITOR_TOKEN[0], token_name=MONITOR_TOKEN[1], token_value=MONITOR_TOKEN[2])
    assert monitor.cluster.resources.get()  # read-only token may audit
    with pytest.raises(ResourceException) as caught:
        monitor.nodes("pve1").qemu(100).migrate.post(target="pve2", online=1)
    assert caught.value.status_code == 403
    assert caught.value.content == "Permission check failed (/vms/100, VM.Migrate)"
    response = raw(frozen_demo, "POST", "/nodes/pve1/qemu/100/migrate", data={"target": "pve2", "online": "1"},
                   headers={"Authorization": "PVEAPIToken={}!{}={}".format(*MONITOR_TOKEN)})
    assert response.json() == {"data": None, "message": "Permission check failed (/vms/100, VM.Migrate)\n"}


def test_resources_are_filtered_not_refused_for_a_narrow_token() -> None:
    from tests.support.sim import running_simulator

    scenario = {
        "nodes": [{"name": "a", "cores": 4, "memory": "8GiB"}],
        "guests": [{"vmid": 100, "node": "a"}, {"vmid": 101, "node": "a"}],
        "tokens": [{"user": "ops@pve", "name": "one", "value": "s3", "acl": {"/vms/100": ["VM.Audit"]}}],
    }
    with running_simulator(scenario, time_scale=0) as sim:
        narrow = token_api(sim, user="ops@pve", token_name="one", token_value="s3")
        assert [r["id"] for r in narrow.cluster.resources.get()] == ["qemu/100"]
        with pytest.raises(ResourceException) as caught:
            narrow.cluster.status.get()
        assert caught.value.status_code == 403 and caught.value.content == "Permission check failed (/, Sys.Audit)"


def test_400_carries_errors_per_parameter(frozen_demo: RunningSimulator) -> None:
    api = token_api(frozen_demo)
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").qemu(100).migrate.post(target="pve1", online=1)
    assert caught.value.status_code == 400 and caught.value.content == "Parameter verification failed."
    assert caught.value.errors == {"target": "target is local node."}
    response = raw(frozen_demo, "POST", "/nodes/pve1/qemu/100/migrate", data={"target": "pve1"},
                   headers=auth_header(frozen_demo))
    assert response.json() == {"data": None, "errors": {"target": "target is local node."},
                               "message": "Parameter verification failed.\n"}
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").qemu(100).migrate.post(target="pve2", online=True)  # proxmoxer sends "True"
    assert caught.value.errors == {"online": "type check ('boolean') failed - got 'True'"}
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").rrddata.get(timeframe="fortnight")
    assert caught.value.status_code == 400 and "timeframe" in caught.value.errors
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").tasks("not-a-upid").status.get()
    assert caught.value.status_code == 400 and caught.value.errors == {"upid": "unable to parse worker upid"}


def test_500_reason_is_the_refusal(frozen_demo: RunningSimulator) -> None:
    with pytest.raises(ResourceException) as caught:
        token_api(frozen_demo).nodes("pve4").qemu(140).migrate.post(target="pve5", online=1)
    assert (caught.value.status_code, caught.value.content) == (500, "VM is locked (backup)")
    response = raw(frozen_demo, "POST", "/nodes/pve4/qemu/140/migrate", data={"target": "pve5", "online": "1"},
                   headers=auth_header(frozen_demo))
    assert response.json() == {"data": None, "message": "VM is locked (backup)\n"}


def test_501_for_unknown_paths_and_methods(frozen_demo: RunningSimulator) -> None:
    api = token_api(frozen_demo)
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve1").frobnicate.get()
    assert caught.value.status_code == 501
    assert caught.value.content == "Method 'GET /nodes/pve1/frobnicate' not implemented"
    with pytest.raises(ResourceException) as caught:
        api.version.post()
    assert caught.value.content == "Method 'POST /version' not implemented"


def test_pve8_has_no_ha_rules_and_no_lxc_precondition() -> None:
    from tests.support.sim import running_simulator

    scenario = {"nodes": [{"name": "a", "cores": 4, "memory": "8GiB", "version": "8.4.14"},
                          {"name": "b", "cores": 4, "memory": "8GiB", "version": "8.4.14"}],
                "guests": [{"vmid": 100, "node": "a", "type": "lxc"}]}
    with running_simulator(scenario, time_scale=0) as sim:
        api = token_api(sim)
        with pytest.raises(ResourceException) as caught:
            api.cluster.ha.rules.get()
        assert (caught.value.status_code, caught.value.content) == (501, "Method 'GET /cluster/ha/rules' not implemented")
        with pytest.raises(ResourceException) as caught:
            api.nodes("a").lxc(100).migrate.get()
        assert caught.value.content == "Method 'GET /nodes/a/lxc/100/migrate' not implemented"
        status = api.nodes("a").status.get()
        assert "available" not in status["memory"] and status["pveversion"].startswith("pve-manager/8.4.14/")
        assert "pressurecpusome" not in api.nodes("a").rrddata.get(timeframe="hour")[-1]
        with pytest.raises(ResourceException) as caught:
            api.nodes("a").lxc(100).migrate.post(target="b", **{"with-conntrack-state": 1})
        assert caught.value.status_code == 400 and "with-conntrack-state" in caught.value.errors


def test_595_for_proxied_calls_to_an_offline_node(demo: RunningSimulator) -> None:
    demo.set_node_online("pve3", False)
    api = token_api(demo)
    for call in (api.nodes("pve3").status.get, api.nodes("pve3").qemu.get):
        with pytest.raises(ResourceException) as caught:
            call()
        assert (caught.value.status_code, caught.value.content) == (595, "No route to host")
    # rrddata has no proxyto in PVE's schema: the API node answers from its own copy.
    rows = api.nodes("pve3").rrddata.get(timeframe="hour")
    assert len(rows) == 60 and "cpu" in rows[0]
    response = raw(demo, "GET", "/nodes/pve3/status", headers=auth_header(demo))
    assert response.content == b""
    node = next(r for r in api.cluster.resources.get(type="node") if r["node"] == "pve3")  # never proxied
    assert node["status"] == "offline" and "cpu" not in node and "uptime" not in node and node["maxcpu"] == 32
    guests = [r for r in api.cluster.resources.get(type="vm") if r["node"] == "pve3"]
    assert guests and {g["status"] for g in guests} == {"unknown"}
    assert next(e for e in api.cluster.status.get() if e.get("name") == "pve3")["online"] == 0


def test_596_and_500_from_error_faults(demo: RunningSimulator) -> None:
    demo.inject_fault({"type": "error", "endpoint": "GET /nodes/{node}/status", "node": "pve2", "status": 596})
    api = token_api(demo)
    with pytest.raises(ResourceException) as caught:
        api.nodes("pve2").status.get()
    assert (caught.value.status_code, caught.value.content) == (596, "Connection timed out")
    assert api.nodes("pve1").status.get()["cpu"] > 0  # only pve2 is affected
    demo.inject_fault({"type": "error", "endpoint": "GET /cluster/resources", "status": 500, "message": "broken pipe"})
    with pytest.raises(ResourceException) as caught:
        api.cluster.resources.get()
    assert (caught.value.status_code, caught.value.content) == (500, "broken pipe")
    demo.clear_faults()
    assert api.cluster.resources.get()



@pytest.mark.parametrize("holder", ["user", "token"])
def test_noaccess_deeper_than_root_hides_that_guest_from_resources(demo: RunningSimulator, holder: str) -> None:
    """PVEAuditor on / lists everything; NoAccess on /vms/100 still hides guest 100: from the
    privsep token wherever it sits, from the token without privsep only when it is on the user."""
    secrets = {}
    for command in ["pveum user add ops@pve", "pveum user token add ops@pve sep --privsep 1",
                    "pveum user token add ops@pve full --privsep 0",
                    "pveum acl modify / --users ops@pve --roles PVEAuditor",
                    "pveum acl modify / --tokens 'ops@pve!sep' --roles PVEAuditor",
                    f"pveum acl modify /vms/100 --{holder}s {'ops@pve' if holder == 'user' else 'ops@pve!sep'} --roles NoAccess"]:
        answer = requests.post(f"{demo.admin_url}/pveum", json={"command": command}, verify=demo.ca_path, timeout=10)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        if data and "value" in data:
            secrets[data["full-tokenid"].split("!")[1]] = data["value"]
    for name, sees_100 in (("sep", False), ("full", holder == "token")):
        api = token_api(demo, user="ops@pve", token_name=name, token_value=secrets[name])
        for listed in (api.cluster.resources.get(), api.cluster.resources.get(type="vm")):
            ids = {r["id"] for r in listed}
            assert "qemu/101" in ids and ("qemu/100" in ids) == sees_100, (name, sorted(ids)[:5])
    assert "qemu/100" in {r["id"] for r in token_api(demo).cluster.resources.get()}  # others still see it
