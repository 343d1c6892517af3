"""Node and guest figures at a virtual time, from the load model and the placement history.

A node's figures are the sum of the guests that were on it at that time plus host overhead;
load averages, iowait, swap, KSM and PSI are derived from those sums. The same functions
serve the present (status, /cluster/resources) and the past (rrddata).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .cluster import GuestState, NodeState, SimCluster
from .loadmodel import CPU, MEM, level, unit

# Per-guest I/O rates (bytes/s) are constant while it runs, so cumulative counters and rrd
# rates agree: counter = rate x seconds since the last reset.
_IO_CHANNELS = {"netin": (11, 2e6), "netout": (12, 1e6), "diskread": (13, 4e6), "diskwrite": (14, 2e6)}
_DISK_CAPACITY = 2e9  # bytes/s a node's disks move before iowait climbs steeply


@dataclass(slots=True)  # not frozen: built 10,000 times per /cluster/resources refresh on `large`
class GuestFigures:
    running: bool
    cpu: float  # fraction of the guest's vCPUs
    mem: int
    uptime: int
    io: dict[str, int]  # cumulative counters
    rates: dict[str, float]


@dataclass(frozen=True, slots=True)  # memoised and shared (see node_figures)
class NodeFigures:
    cores_used: float
    cpu: float  # fraction of host CPUs
    mem: int
    io_rate: float  # bytes/s of its guests' disks
    wait: float
    swap_used: int
    ksm_shared: int
    demand: float = 0.0  # CPU its guests ask for / host CPUs, not capped: above 1 the node is overcommitted

    def stall(self, maxmem: int) -> tuple[float, float]:
        """CPU and memory PSI `some` (percent): runnable work waits once demand passes 70 % of the
        threads, steeply once it passes all of them; memory stalls once it is 85 % full."""
        mem_ratio = self.mem / maxmem if maxmem else 0.0
        cpu_some = min(100.0, max(0.0, self.demand - 0.7) / 0.3 * 40)
        mem_some = min(100.0, max(0.0, mem_ratio - 0.85) / 0.15 * 30)
        return cpu_some, mem_some

    def pressure(self, maxmem: int) -> dict[str, float]:
        """PVE 9 PSI (percent of time stalled, as /proc/pressure avg10) from CPU, memory and I/O load."""
        cpu_some, mem_some = self.stall(maxmem)
        io_some = min(60.0, self.wait * 150)
        return {
            "pressurecpusome": round(cpu_some, 2),
            "pressureiosome": round(io_some, 2),
            "pressureiofull": round(io_some * 0.6, 2),
            "pressurememorysome": round(mem_some, 2),
            "pressurememoryfull": round(mem_some * 0.5, 2),
        }


def io_rates(cluster: SimCluster, guest: GuestState) -> dict[str, float]:
    """The guest's constant I/O rates while it runs, worked out once."""
    if guest.rates is None:
        guest.rates = {k: round(scale * (0.05 + unit(cluster.seed, guest.spec.vmid, key, 0)), 1)
                       for k, (key, scale) in _IO_CHANNELS.items()}
    return guest.rates


def _level(cluster: SimCluster, guest: GuestState, channel: int, t: float) -> float:
    """The model's level, memoised per cluster: a node sums its guests at the same instants often."""
    spec = guest.spec
    key = (spec.vmid, channel, t)
    memo = cluster.level_memo
    value = memo.get(key)
    if value is None:
        if len(memo) > 500_000:
            memo.clear()
        value = memo[key] = level(spec.cpu if channel == CPU else spec.mem, cluster.seed, spec.vmid, channel, t,
                                  cluster.origin)
    return value


def guest_running_at(cluster: SimCluster, guest: GuestState, t: float, node: str | None = None) -> bool:
    if guest.status == "stopped":
        return False
    return cluster.nodes[node or guest.node_at(t)].online_at(t)


def guest_figures(cluster: SimCluster, guest: GuestState, t: float, node: str | None = None) -> GuestFigures:
    spec = guest.spec
    if not guest_running_at(cluster, guest, t, node):
        return GuestFigures(False, 0.0, 0, 0, {k: 0 for k in _IO_CHANNELS}, {k: 0.0 for k in _IO_CHANNELS})
    cpu = _level(cluster, guest, CPU, t)
    mem = int(_level(cluster, guest, MEM, t) * spec.memory)
    rates = io_rates(cluster, guest)
    up = max(0.0, t - guest.since)
    io = {k: int(r * up) for k, r in rates.items()}
    return GuestFigures(True, round(cpu, 4), mem, int(max(0.0, t - guest.boot)), io, rates)


def guest_load(cluster: SimCluster, guest: GuestState, t: float) -> tuple[float, int]:
    """(CPU cores, memory bytes) the guest uses at `t`; 0 when not running there."""
    spec = guest.spec
    if guest.status == "stopped":
        return 0.0, 0
    return _level(cluster, guest, CPU, t) * spec.cpus, int(_level(cluster, guest, MEM, t) * spec.memory)


def node_guests_at(cluster: SimCluster, node: NodeState, t: float) -> list[GuestState]:
    name = node.spec.name
    return [g for vmid in node.ever if (g := cluster.guests[vmid]).node_at(t) == name]


def node_figures(cluster: SimCluster, node: NodeState, t: float) -> NodeFigures | None:
    """None when the node is offline at `t` (rrd rows then omit every value).

    Memoised per cluster version: one status call asks for seven instants (its load averages),
    rrddata for the same aligned rows again and again, and a real node answers its status in
    milliseconds whatever the cluster's size. A node's figures depend only on placement and
    online history (every change bumps `cluster.version`) and on immutable specs.
    """
    key = (cluster.version, node.spec.name, t)
    memo = cluster.figures_memo
    if key in memo:
        return memo[key]
    if len(memo) > 100_000:
        memo.clear()
    figures = memo[key] = _node_figures(cluster, node, t)
    return figures


def _node_figures(cluster: SimCluster, node: NodeState, t: float) -> NodeFigures | None:
    if not node.online_at(t):
        return None
    spec = node.spec
    cores = spec.overhead_cpu
    mem = spec.overhead_mem
    io = 0.0
    for guest in node_guests_at(cluster, node, t):
        if guest.status == "stopped":
            continue
        c, m = guest_load(cluster, guest, t)
        cores += c
        mem += m
        rates = io_rates(cluster, guest)
        io += rates["diskread"] + rates["diskwrite"]
    cpu = min(1.0, cores / spec.cores)
    wait = min(0.5, 0.0005 + 0.02 * io / _DISK_CAPACITY + 0.04 * cpu * cpu)
    # Past 90% of memory the host swaps; KSM (ksmtuned) starts sharing pages past 80%.
    swap_used = min(spec.swap, max(0, int((mem - 0.9 * spec.memory) * 0.5)))
    ksm = max(0, int((mem - 0.8 * spec.memory) * 0.25))
    return NodeFigures(round(min(cores, spec.cores), 3), round(cpu, 4), min(mem, spec.memory), io,
                       round(wait, 5), swap_used, ksm, round(cores / spec.cores, 4))


def guest_pressure(cluster: SimCluster, guest: GuestState, figures: GuestFigures, t: float,
                   node: str | None = None) -> dict[str, float]:
    """PVE 9 per-guest PSI (percent, the guest's cgroup): a guest waits on its node's stall in
    proportion to how busy it is, so the busiest guests on a stalling node stall most."""
    host = cluster.nodes[node or guest.node_at(t)]
    node_now = node_figures(cluster, host, t) if figures.running else None
    cpu_some, mem_some = (0.0, 0.0) if node_now is None else node_now.stall(host.spec.memory)
    cpu = round(cpu_some * figures.cpu, 2)
    mem = round(mem_some * (figures.mem / guest.spec.memory if guest.spec.memory else 0.0), 2)
    fields = {"pressurecpusome": cpu, "pressureiosome": 0.0, "pressureiofull": 0.0, "pressurememorysome": mem,
              "pressurememoryfull": round(mem / 2, 2)}
    if guest.spec.type == "qemu":  # PVE 9.1 reports CPU `full` for VMs only
        fields["pressurecpufull"] = round(cpu / 2, 2)
    return fields


def load_averages(cluster: SimCluster, node: NodeState, t: float) -> tuple[str, str, str]:
    """1/5/15-minute load averages: runnable threads (busy cores plus I/O waiters), as strings."""
    def runnable(at: float) -> float:
        figures = node_figures(cluster, node, at)
        return 0.0 if figures is None else figures.cores_used + figures.wait * node.spec.cores

    averages = []
    for window in (60, 300, 900):
        # Three instants a third of the window apart, on that step's grid: the next status calls
        # ask for the same instants (node figures are memoised), so a node answers in about the
        # time it takes to figure one instant, not seven, as a real node answers from its kernel's
        # counters. A real load average lags too (it is smoothed over its window).
        step = window / 3
        last = math.floor(t / step) * step
        samples = [runnable(last - step * i) for i in range(3)]
        averages.append(f"{sum(samples) / len(samples):.2f}")
    return averages[0], averages[1], averages[2]
