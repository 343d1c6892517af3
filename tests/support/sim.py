"""Start a simulator in-process on a free port, for any test that needs a Proxmox VE cluster.

    with running_simulator("demo", time_scale=0) as sim:
        api = ProxmoxAPI(sim.host, user=sim.token_user, token_name=sim.token_name,
                         token_value=sim.token_value, verify_ssl=sim.ca_path)

The admin helpers talk to the admin API over HTTPS, exactly as a benchmark or another
process would. See docs/simulator.md for scenarios and fault objects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from pveapi.settings import ConnectionSettings, Secret
from simulator.scenario import ALL_PRIVILEGES, BUILTIN_DIR, Credential, Scenario
from simulator.server import Simulator

TOKEN_USER = "root@pam"
TOKEN_NAME = "test"
TOKEN_VALUE = "00000000-0000-4000-8000-0000000075e7"


class RunningSimulator:
    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.host = f"127.0.0.1:{simulator.port}"
        self.url = simulator.url
        self.admin_url = simulator.admin_url
        self.ca_path = str(simulator.cert_path)
        self.token_user = TOKEN_USER
        self.token_name = TOKEN_NAME
        self.token_value = TOKEN_VALUE
        self.token_id = f"{TOKEN_USER}!{TOKEN_NAME}"
        self._session = requests.Session()

    # -- connection -----------------------------------------------------------------------
    def connection_settings(self, **overrides: Any) -> ConnectionSettings:
        """Settings for pveapi.client.PveClient, verifying the simulator's certificate."""
        values: dict[str, Any] = {"host": self.host, "user": self.token_user, "token_name": self.token_name,
                                  "token_value": Secret(self.token_value), "verify_ssl": self.ca_path}
        values.update(overrides)
        return ConnectionSettings(**values)

    # -- admin API ------------------------------------------------------------------------
    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        # verify= per request: a session-level value loses to REQUESTS_CA_BUNDLE in the environment.
        response = self._session.request(method, f"{self.admin_url}{path}", json=body, timeout=30,
                                         verify=self.ca_path)
        if response.status_code != 200:
            raise AssertionError(f"admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def clock(self) -> float:
        return float(self._admin("GET", "/clock")["time"])

    def advance(self, seconds: float) -> float:
        """Move virtual time forward; migrations and node events due meanwhile happen in order."""
        return float(self._admin("POST", "/clock", {"advance": seconds})["time"])

    def set_time(self, epoch: float) -> float:
        return float(self._admin("POST", "/clock", {"set": epoch})["time"])

    def set_time_scale(self, scale: float) -> None:
        self._admin("POST", "/clock", {"time_scale": scale})

    def request_counts(self) -> dict[str, int]:
        """Requests per `METHOD /endpoint/{template}` since start (or the last reset)."""
        return dict(self._admin("GET", "/requests")["counts"])

    def schema_refusals(self) -> dict[str, int]:
        """Requests refused by PVE's schema since start (or the last reset):
        `"METHOD /template: parameter: message"` -> count (`"METHOD /template: message"` for a 501)."""
        return dict(self._admin("GET", "/requests")["refused"])

    def reset_request_counts(self) -> None:
        self._admin("POST", "/requests/reset")

    def inject_fault(self, fault: Mapping[str, Any] | list[Mapping[str, Any]]) -> list[str]:
        return list(self._admin("POST", "/faults", fault)["ids"])

    def clear_faults(self, fault_id: str | None = None) -> int:
        return int(self._admin("DELETE", f"/faults/{fault_id}" if fault_id else "/faults")["cleared"])

    def state(self) -> dict[str, Any]:
        return dict(self._admin("GET", "/state"))

    def placement(self) -> dict[int, str]:
        """vmid -> node, now."""
        return {g["vmid"]: g["node"] for g in self.state()["guests"]}

    def set_node_online(self, node: str, online: bool) -> None:
        self._admin("POST", f"/nodes/{node}/{'online' if online else 'offline'}")

    def set_node_maintenance(self, node: str, enabled: bool) -> None:
        """HA node maintenance, as `ha-manager crm-command node-maintenance enable|disable` sets it."""
        self._admin("POST", f"/nodes/{node}/maintenance/{'enable' if enabled else 'disable'}")

    def tasks(self) -> list[dict[str, Any]]:
        return list(self._admin("GET", "/tasks")["tasks"])

    def stop(self) -> None:
        self._session.close()
        self.simulator.stop()


def demo_with_replication() -> dict[str, Any]:
    """The demo plus replication jobs (one failing, one on another node than pve1, the API's) and a QDevice."""
    data: dict[str, Any] = yaml.safe_load((BUILTIN_DIR / "demo.yaml").read_text(encoding="utf-8"))
    data["replication"] = [{"guest": 100, "target": "pve2"},
                           {"guest": 113, "target": "pve3", "schedule": "*/5", "fail_count": 2, "duration": 7.25},
                           {"guest": 102, "target": "pve1", "comment": "web03 to pve1"}]
    data["qdevice"] = {"host": "10.0.0.250"}
    return data


@contextlib.contextmanager
def running_simulator(
    scenario: Scenario | str | Path | Mapping[str, Any] | list[Any] = "demo",
    *,
    seed: int | None = None,
    time_scale: float | None = 60.0,
    start: float | None = None,
    token_value: str = TOKEN_VALUE,
    faults: Sequence[Mapping[str, Any]] = (),
    **options: Any,
) -> Iterator[RunningSimulator]:
    """A started simulator on 127.0.0.1 and a free port; stopped on exit.

    Adds a full-privilege token `root@pam!test` (value `token_value`) to the scenario's own.
    `time_scale=None` keeps the scenario's; 0 freezes the clock (use `advance`).
    """
    token = Credential(TOKEN_USER, token_value, {"/": ALL_PRIVILEGES}, TOKEN_NAME)
    simulator = Simulator(scenario, host="127.0.0.1", port=0, seed=seed, time_scale=time_scale, start=start,
                          tokens=[token], faults=list(faults), **options)
    running = RunningSimulator(simulator.start())
    running.token_value = token_value
    try:
        yield running
    finally:
        running.stop()
