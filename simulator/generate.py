"""`generate:` in a scenario: many nodes and guests from a few lines (the `large` scenario).

Deterministic for the scenario's seed, so a benchmark sees the same cluster every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pveapi.errors import ConfigError
from pveapi.values import MAX_VMID, MIN_VMID, count, mapping, number

from .validation import MAX_SEED, listed

MAX_COUNT = 100_000  # nodes or guests: ten times the `large` scenario
_PROFILES = (
    {"profile": "diurnal", "mean": 0.3, "amplitude": 0.2},
    {"profile": "constant", "level": 0.15},
    {"profile": "bursty", "base": 0.05, "peak": 0.8, "chance": 0.1},
    {"profile": "trending", "start": 0.1, "per_day": 0.02},
    {"profile": "idle"},
)


def expand_generated(data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """Return `data` with generated nodes and guests appended to the listed ones."""
    spec = data.get("generate")
    if not spec:
        return data
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}.generate: expected a mapping with `nodes` and/or `guests`")
    rng = random.Random(count(data.get("seed", 1), f"{where}.seed", 0, MAX_SEED))
    nodes = list(listed(data.get("nodes") or [], f"{where}.nodes"))
    node_spec = dict(mapping(spec.get("nodes"), f"{where}.generate.nodes"))
    generated = count(node_spec.pop("count", 0), f"{where}.generate.nodes.count", 0, MAX_COUNT)
    prefix = str(node_spec.pop("prefix", "pve"))
    width = len(str(generated))
    nodes += [{"name": f"{prefix}{i + 1:0{width}d}", **node_spec} for i in range(generated)]
    if not nodes:
        raise ConfigError(f"{where}.generate: guests need nodes; add `generate.nodes` or `nodes`")
    names = [mapping(n, f"{where}.nodes[{i}]").get("name") for i, n in enumerate(nodes)]
    guests = list(listed(data.get("guests") or [], f"{where}.guests"))
    guest_spec = dict(mapping(spec.get("guests"), f"{where}.generate.guests"))
    total = count(guest_spec.get("count", 0), f"{where}.generate.guests.count", 0, MAX_COUNT)
    first = count(guest_spec.get("first_vmid", 1000), f"{where}.generate.guests.first_vmid", MIN_VMID, MAX_VMID - total)
    cpus = listed(guest_spec.get("cpus", [1, 2, 4]), f"{where}.generate.guests.cpus")
    memory = listed(guest_spec.get("memory", ["1GiB", "2GiB", "4GiB"]), f"{where}.generate.guests.memory")
    if total and not (cpus and memory):
        raise ConfigError(f"{where}.generate.guests: `cpus` and `memory` need at least one choice each")
    lxc_share = number(guest_spec.get("lxc_share", 0.3), f"{where}.generate.guests.lxc_share", 0, 1)
    stopped_share = number(guest_spec.get("stopped_share", 0.05), f"{where}.generate.guests.stopped_share", 0, 1)
    for i in range(total):
        guests.append({
            "vmid": first + i,
            "type": "lxc" if rng.random() < lxc_share else "qemu",
            "name": f"guest{first + i}",
            "node": names[i % len(names)],
            "cpus": rng.choice(cpus),
            "memory": rng.choice(memory),
            "status": "stopped" if rng.random() < stopped_share else "running",
            "cpu": dict(rng.choice(_PROFILES)),
            "mem": {"profile": "constant", "level": round(rng.uniform(0.3, 0.8), 2)},
        })
    return {**data, "nodes": nodes, "guests": guests}
