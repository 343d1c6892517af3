"""`generate:` in a scenario: many nodes and guests from a few lines (the `large` scenario).

Deterministic for the scenario's seed, so a benchmark sees the same cluster every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pveapi.errors import ConfigError

from .validation import number, whole

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
    rng = random.Random(data.get("seed", 1))
    nodes = list(data.get("nodes") or [])
    node_spec = dict(spec.get("nodes") or {})
    count = _count(node_spec, f"{where}.generate.nodes")
    prefix = str(node_spec.pop("prefix", "pve"))
    node_spec.pop("count", None)
    width = len(str(count))
    nodes += [{"name": f"{prefix}{i + 1:0{width}d}", **node_spec} for i in range(count)]
    if not nodes:
        raise ConfigError(f"{where}.generate: guests need nodes; add `generate.nodes` or `nodes`")
    guests = list(data.get("guests") or [])
    guest_spec = dict(spec.get("guests") or {})
    total = _count(guest_spec, f"{where}.generate.guests")
    first = whole(guest_spec.get("first_vmid", 1000), f"{where}.generate.guests.first_vmid", 100, 999_999_999 - total)
    cpus = list(guest_spec.get("cpus", [1, 2, 4]))
    memory = list(guest_spec.get("memory", ["1GiB", "2GiB", "4GiB"]))
    lxc_share = number(guest_spec.get("lxc_share", 0.3), f"{where}.generate.guests.lxc_share", 0, 1)
    stopped_share = number(guest_spec.get("stopped_share", 0.05), f"{where}.generate.guests.stopped_share", 0, 1)
    for i in range(total):
        guests.append({
            "vmid": first + i,
            "type": "lxc" if rng.random() < lxc_share else "qemu",
            "name": f"guest{first + i}",
            "node": nodes[i % len(nodes)]["name"],
            "cpus": rng.choice(cpus),
            "memory": rng.choice(memory),
            "status": "stopped" if rng.random() < stopped_share else "running",
            "cpu": dict(rng.choice(_PROFILES)),
            "mem": {"profile": "constant", "level": round(rng.uniform(0.3, 0.8), 2)},
        })
    return {**data, "nodes": nodes, "guests": guests}


def _count(spec: Mapping[str, Any], where: str) -> int:
    count = spec.get("count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise ConfigError(f"{where}.count: expected a whole number from 0 to {MAX_COUNT}, got {count!r}")
    return count
