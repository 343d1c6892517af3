"""`policy.bwlimit`: passed on every migrate call, slows the migration, and the estimates know it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.config import Config
from controller.cycle import run_cycle
from controller.executor import Executor
from planner.policy import Policy
from pveapi.client import PveClient
from pveapi.errors import ConfigError
from tests.controller.conftest import Watch
from tests.support.sim import RunningSimulator

ONE_AT_A_TIME = {"poll_interval": 5, "max_in_flight": 1}


def _migrate(sim: RunningSimulator, config: Config) -> dict[int, dict[str, Any]]:
    """Carry out the plan; the simulator's migration tasks by vmid."""
    client = PveClient(config.proxmox)
    cycle = run_cycle(client, None, config)
    watch = Watch(sim, client)
    report = Executor(client, cycle.rules, config.policy, config.apply, sleep=watch.sleep).apply(cycle.plan, cycle.model)
    assert report.count("failed") == 0 and report.count("succeeded") > 0, report.summary
    return {int(t["id"]): t for t in sim.tasks() if t["type"] == "qmigrate" and t["status"] == "stopped"}


# A start at which the demo's plan also moves HA-managed 120: its move goes through the HA manager.
START = 1796133005


def test_bwlimit_reaches_every_migrate_call_and_the_migration_takes_longer(make_config: Callable[..., Config]) -> None:
    from tests.support.sim import running_simulator

    with running_simulator("demo", time_scale=0, start=START) as free:
        unlimited = _migrate(free, make_config(free, apply=ONE_AT_A_TIME))
    limit = 65536  # KiB/s: 64 MiB/s, well under the demo's 1 GiB/s
    with running_simulator("demo", time_scale=0, start=START) as sim:
        config = make_config(sim, apply=ONE_AT_A_TIME, policy={"bwlimit": limit, "node_bwlimit": {"pve5": 32768}})
        estimates = {m.vmid: m.est_seconds for m in run_cycle(PveClient(config.proxmox), None, config).plan.moves}
        limited = _migrate(sim, config)
        ha = {int(t["id"]) for t in sim.tasks() if t["type"] == "hamigrate"}
        placement = sim.placement()
    # The HA manager takes no bwlimit on the call (datacenter.cfg's applies), so its task has none.
    assert ha and all(limited[v]["bwlimit"] is None for v in ha)
    direct = {v: t for v, t in limited.items() if v not in ha}
    assert direct and all(t["bwlimit"] == (32768 if "pve5" in (t["node"], placement[v]) else limit)
                          for v, t in direct.items()), {v: (t["node"], placement[v], t["bwlimit"]) for v, t in direct.items()}
    both = set(direct) & set(unlimited)
    assert both
    for vmid in both:
        slow, fast = limited[vmid], unlimited[vmid]
        assert slow["endtime"] - slow["starttime"] > fast["endtime"] - fast["starttime"]
    running = [v for v in estimates if v in direct]
    assert any(estimates[v] > 60 for v in running)  # 64 MiB/s: seconds per GiB, not a fraction


@pytest.mark.parametrize("block, message", [
    ({"bwlimit": 0}, "policy.bwlimit: expected a whole number from 1 to"),
    ({"bwlimit": "fast"}, "policy.bwlimit: expected a whole number from 1 to"),
    ({"node_bwlimit": {"pve1": -5}}, "policy.node_bwlimit.pve1: expected a whole number from 1 to"),
])
def test_bad_bwlimit_is_one_line(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        Policy.from_mapping(block, "policy")


def test_the_estimate_of_a_migration_to_or_from_a_node_with_its_own_limit_uses_that_limit(
    make_config: Callable[..., Config], frozen_sim: RunningSimulator
) -> None:
    config = make_config(frozen_sim, policy={"bwlimit": 65536, "node_bwlimit": {"pve5": 16384}})
    moves = [m for m in run_cycle(PveClient(config.proxmox), None, config).plan.moves
             if m.type == "qemu" and m.mem_bytes > 0 and m.est_seconds != 5.0]  # live migrations only
    per_node = [m for m in moves if "pve5" in (m.source, m.target)]
    assert per_node and len(per_node) < len(moves), [(m.vmid, m.source, m.target) for m in moves]
    for move in moves:
        kib_s = 16384 if move in per_node else 65536
        assert move.est_seconds == round(move.mem_bytes / (kib_s * 1024) + 1.0, 1), move
