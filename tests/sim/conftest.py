"""Fixtures for the simulator's contract tests: proxmoxer clients on a running simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from proxmoxer import ProxmoxAPI

from tests.support.sim import RunningSimulator, running_simulator

DEMO_PASSWORD = "demo"
MONITOR_TOKEN = ("monitor@pve", "exporter", "00000000-0000-4000-8000-0000000e4907")


def token_api(sim: RunningSimulator, **overrides: str) -> ProxmoxAPI:
    options = {"user": sim.token_user, "token_name": sim.token_name, "token_value": sim.token_value}
    options.update(overrides)
    return ProxmoxAPI(sim.host, verify_ssl=sim.ca_path, timeout=10, **options)


def ticket_api(sim: RunningSimulator) -> ProxmoxAPI:
    return ProxmoxAPI(sim.host, user="root@pam", password=DEMO_PASSWORD, verify_ssl=sim.ca_path, timeout=10)


@pytest.fixture(scope="module")
def frozen_demo() -> Iterator[RunningSimulator]:
    """The demo scenario with a frozen clock, shared by a module's read-only tests."""
    with running_simulator("demo", time_scale=0) as sim:
        yield sim


@pytest.fixture
def demo() -> Iterator[RunningSimulator]:
    """A fresh demo with a frozen clock, for tests that change placement or nodes."""
    with running_simulator("demo", time_scale=0) as sim:
        yield sim


@pytest.fixture(params=["token", "ticket"])
def api(request: pytest.FixtureRequest, frozen_demo: RunningSimulator) -> ProxmoxAPI:
    """An unmodified proxmoxer client, once with an API token and once with a ticket login."""
    return token_api(frozen_demo) if request.param == "token" else ticket_api(frozen_demo)
