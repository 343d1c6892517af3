"""A day of simulated time on a diurnal cluster: the loop converges and does not ping-pong."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from controller.loop import Controller
from pveapi.client import PveClient
from tests.controller.conftest import Watch, write_config
from tests.support.sim import running_simulator

HOUR = 3600.0
INTERVAL = 0.5 * HOUR
COOLDOWN = 4 * HOUR


def diurnal_cluster() -> dict[str, Any]:
    """4 nodes; 28 guests whose CPU peaks at 02:00, 10:00 or 18:00, crowded on two nodes at start."""
    nodes = [{"name": f"pve{i}", "cores": 16, "memory": "64GiB", "version": "8.4.14"} for i in range(1, 5)]
    guests = []
    for i in range(28):
        guests.append({
            "vmid": 200 + i, "type": "lxc" if i % 5 == 4 else "qemu", "name": f"app{i:02d}",
            "node": "pve1" if i < 14 else "pve2" if i < 22 else "pve3" if i < 26 else "pve4",
            "cpus": 4, "memory": "6GiB", "storage": "ceph",
            "cpu": {"profile": "diurnal", "mean": 0.3, "amplitude": 0.25, "peak_hour": (2, 10, 18)[i % 3]},
            "mem": {"profile": "constant", "level": 0.6},
        })
    return {"name": "diurnal", "seed": 3, "start": "2026-01-05T00:00:00Z",
            "migration": {"bandwidth": "1GiB", "overhead_s": 4},
            "storages": [{"name": "ceph", "type": "rbd", "shared": True, "content": "images,rootdir", "size": "4TiB"}],
            "nodes": nodes, "guests": guests}


def test_a_day_of_diurnal_load_converges_without_ping_pong(tmp_path: Path) -> None:
    with running_simulator(diurnal_cluster(), time_scale=0) as sim:
        config = write_config(
            tmp_path, sim,
            run={"automation": "automatic", "interval": INTERVAL, "hold_time": "1h", "cooldown": COOLDOWN},
            apply={"poll_interval": 10, "max_in_flight": 2},
        )
        from controller.config import load_config

        settings = load_config(config)
        client = PveClient(settings.proxmox)
        watch = Watch(sim, client)
        controller = Controller(settings, client, None, clock=sim.clock, sleep=watch.sleep)
        watch.sample()
        imbalance: list[float] = []
        start = sim.clock()
        while sim.clock() - start < 24 * HOUR:
            began = sim.clock()
            summary = controller.cycle()
            assert summary.result in ("planned", "applied"), summary.reason
            assert controller.current_plan is not None
            imbalance.append(controller.current_plan["imbalance"]["before"])
            sim.advance(max(0.0, INTERVAL - (sim.clock() - began)))
            watch.sample()
        controller.release()

    per_guest = Counter({vmid: len(moves) for vmid, moves in watch.moves.items()})
    returns = {v: m for v, m in watch.moves.items() if any(a[1] == c[1] for a, c in zip(m, m[2:], strict=False))}
    half = len(imbalance) // 2
    print(f"cycles {len(imbalance)}, migrations {sum(per_guest.values())} "
          f"(first 12 h {sum(1 for m in watch.moves.values() for t, _ in m if t - start < 12 * HOUR)}), "
          f"most per guest {per_guest.most_common(3)}, returns {len(returns)}, "
          f"imbalance first {imbalance[0]:.3f}, mean second half {sum(imbalance[half:]) / len(imbalance[half:]):.3f}")
    assert watch.problems == []
    assert watch.moved_within(COOLDOWN) == {}  # cooldown kept: no guest moved twice within 4 h
    assert max(per_guest.values()) <= 24 * HOUR / COOLDOWN  # at most once per cooldown, over a day
    assert sum(per_guest.values()) < len(diurnal_cluster()["guests"])  # far fewer moves than guests
    first_half = sum(1 for m in watch.moves.values() for t, _ in m if t - start < 12 * HOUR)
    assert sum(per_guest.values()) - first_half <= first_half  # settling down, not chasing the peaks
    assert returns == {}  # no guest went back to a node it had left: no ping-pong
    assert sum(imbalance[half:]) / len(imbalance[half:]) < imbalance[0] / 2  # converged from the start's crowding
