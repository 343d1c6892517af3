"""Controller tests: configs pointing at a simulator, and the invariants every run must keep."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import structlog
import yaml

from controller.config import Config, load_config
from pveapi.client import PveClient
from tests.support.sim import RunningSimulator, running_simulator


def write_config(directory: Path, sim: RunningSimulator, token_value: str | None = None, **blocks: Any) -> Path:
    """A config file for `sim` (token root@pam!test unless told otherwise); state in `directory`."""
    proxmox = {"host": sim.host, "user": sim.token_user, "token_name": sim.token_name,
               "token_value": token_value or sim.token_value, "verify_ssl": sim.ca_path, "timeout": 10}
    run = {"state_file": "state.json", **blocks.pop("run", {})}
    apply = {"poll_interval": 0.2, **blocks.pop("apply", {})}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump({"proxmox": {**proxmox, **blocks.pop("proxmox", {})}, "run": run, "apply": apply, **blocks}))
    return path


@dataclass
class Watch:
    """Samples the simulated cluster at every step of a run and checks the invariants."""

    sim: RunningSimulator
    client: PveClient
    samples: int = 0
    problems: list[str] = field(default_factory=list)
    moves: dict[int, list[tuple[float, str]]] = field(default_factory=dict)  # vmid -> [(time, node)]
    _last: dict[int, str] = field(default_factory=dict)

    def sample(self) -> None:
        """Every guest exactly once; none moved onto an offline node; no node above its memory.

        (Guests already on a node when the test takes it down stay there, as on a real cluster.)"""
        state = self.sim.state()
        online = {n["name"] for n in state["nodes"] if n["online"]}
        seen = [vmid for n in state["nodes"] for vmid in n["guests"]]
        if len(seen) != len(set(seen)) or len(seen) != len(state["guests"]):
            self.problems.append(f"t={state['time']}: guests not exactly once: {sorted(seen)}")
        for guest in state["guests"]:
            previous = self._last.get(guest["vmid"])
            if guest["node"] not in online and previous not in (None, guest["node"]):
                self.problems.append(f"t={state['time']}: guest {guest['vmid']} moved onto offline node {guest['node']}")
            if previous is not None and previous != guest["node"]:
                self.moves.setdefault(guest["vmid"], []).append((state["time"], guest["node"]))
            self._last[guest["vmid"]] = guest["node"]
        for node in self.client.resources().nodes:
            if node.online and node.mem > node.maxmem:
                self.problems.append(f"t={state['time']}: {node.name} uses {node.mem} of {node.maxmem} bytes")
        self.samples += 1

    def sleep(self, seconds: float) -> None:
        """The executor's sleep: virtual time passes, then the cluster is checked."""
        self.sim.advance(seconds)
        self.sample()

    def moved_within(self, cooldown: float) -> dict[int, list[tuple[float, str]]]:
        return {v: m for v, m in self.moves.items() if any(b[0] - a[0] < cooldown for a, b in itertools.pairwise(m))}


def demo_rules_broken(placement: Mapping[int, str]) -> list[str]:
    """The demo scenario's hard rules, checked on a placement (vmid -> node)."""
    broken = []
    if placement[131] != "pve3":
        broken.append("131 (plb_pin_pve3) left pve3")
    if placement[120] == placement[122]:
        broken.append("HA resource-affinity ha-apart: 120 and 122 share a node")
    if placement[103] == placement[110]:
        broken.append("exclude_db: 103 and 110 share a node")
    return broken


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """`main()` points structlog at the stderr of the test that called it; later tests must
    not log into that closed capture."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def frozen_sim() -> Iterator[RunningSimulator]:
    """The demo cluster with a frozen clock: only the test moves time."""
    with running_simulator("demo", time_scale=0) as sim:
        yield sim


class MakeConfig(Protocol):
    """The make_config fixture: a loaded Config pointing at `sim`, with the given config blocks."""

    def __call__(self, sim: RunningSimulator, **blocks: Any) -> Config: ...


@pytest.fixture
def make_config(tmp_path: Path) -> MakeConfig:
    def make(sim: RunningSimulator, **blocks: Any) -> Config:
        return load_config(write_config(tmp_path, sim, **blocks))

    return make
