"""The deterministic load model: a guest's CPU and memory level at any virtual time.

Every figure is a pure function of (seed, vmid, profile, time), so the present, rrddata
history and any replay agree, and two runs with the same seed see the same cluster.
"""

from __future__ import annotations

import math

from .scenario import Profile

_MASK = (1 << 64) - 1
NOISE_STEP = 60  # noise changes once a virtual minute, like one rrd row
BURST_STEP = 300  # a burst lasts five virtual minutes


def unit(seed: int, key: int, channel: int, bucket: int) -> float:
    """A uniform number in [0, 1) from integers (splitmix64): cheap, stateless, reproducible."""
    z = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + channel * 0x94D049BB133111EB + bucket) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return ((z ^ (z >> 31)) & _MASK) / 2.0**64


def level(profile: Profile, seed: int, vmid: int, channel: int, t: float, origin: float) -> float:
    """Utilisation (0..1) of one resource of one guest at virtual time `t`.

    `channel` separates CPU from memory; `origin` is the simulation start (for `trending`).
    """
    p = profile.params
    kind = profile.kind
    if kind == "constant":
        value = p["level"]
    elif kind == "diurnal":
        hours = (t % 86400) / 3600
        value = p["mean"] + p["amplitude"] * math.cos(2 * math.pi * (hours - p["peak_hour"]) / 24)
    elif kind == "bursty":
        # Guests of one burst `group` draw the same bursts (a shared batch schedule); 0 is the guest's own.
        key = -int(p["group"]) if p.get("group") else vmid
        burst = unit(seed, key, channel + 100, int(t // BURST_STEP)) < p["chance"]
        value = p["peak"] if burst else p["base"]
    elif kind == "trending":
        value = p["start"] + p["per_day"] * (t - origin) / 86400
    else:  # idle
        value = 0.01
    noise = p.get("noise", 0.0)
    if noise:
        value += noise * (2 * unit(seed, vmid, channel, int(t // NOISE_STEP)) - 1)
    return min(1.0, max(0.0, value))


CPU, MEM = 1, 2
