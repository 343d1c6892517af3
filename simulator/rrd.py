"""rrddata rows for nodes and guests, computed from the same model as the live figures."""

from __future__ import annotations

from typing import Any

from .cluster import GuestState, NodeState, SimCluster
from .figures import guest_figures, guest_pressure, guest_running_at, io_rates, node_figures, node_guests_at

# timeframe -> (seconds per row, rows); `hour` is 60 one-minute rows, the rest as PVE 8 keeps them
# (PVE 9's `decade`: one row a month).
TIMEFRAMES = {"hour": (60, 60), "day": (1800, 70), "week": (10800, 70), "month": (43200, 70), "year": (604800, 70),
              "decade": (2592000, 120)}
_MAX_SAMPLES = 6  # model samples averaged (or maxed) into one row


def _frame(params: dict[str, str]) -> tuple[int, int, str]:
    """The schema check has vetted `timeframe` (required) and `cf`."""
    step, rows = TIMEFRAMES[params["timeframe"]]
    return step, rows, params.get("cf", "AVERAGE")


def _rows(now: float, params: dict[str, str], sample: Any) -> list[dict[str, Any]]:
    """One row per step; each field is the average (or max) of the model sampled in the step."""
    step, count, cf = _frame(params)
    end = int(now // step) * step
    samples = min(_MAX_SAMPLES, max(1, step // 60))
    rows = []
    for i in range(count):
        t = end - step * (count - 1 - i)
        values = [v for k in range(samples) if (v := sample(t - step * k / samples)) is not None]
        row: dict[str, Any] = {"time": t}
        if values:
            for key in values[0]:
                series = [v[key] for v in values]
                row[key] = max(series) if cf == "MAX" else sum(series) / len(series)
        rows.append(row)
    return rows


def node_rrd(cluster: SimCluster, node: NodeState, now: float, params: dict[str, str]) -> list[dict[str, Any]]:
    spec = node.spec
    pve9 = spec.major >= 9

    def sample(t: float) -> dict[str, float] | None:
        figures = node_figures(cluster, node, t)
        if figures is None:
            return None
        # Only the running guests' constant network rate: their full figures are not needed here.
        net = sum(io_rates(cluster, g)["netin"] for g in node_guests_at(cluster, node, t)
                  if guest_running_at(cluster, g, t, spec.name))
        row = {
            "loadavg": figures.cores_used + figures.wait * spec.cores, "maxcpu": spec.cores, "cpu": figures.cpu,
            "iowait": figures.wait, "memtotal": spec.memory, "memused": figures.mem, "swaptotal": spec.swap,
            "swapused": figures.swap_used, "roottotal": spec.rootfs, "rootused": spec.rootfs // 4,
            "netin": net, "netout": net * 0.6,
        }
        if pve9:
            row["memavailable"] = spec.memory - figures.mem
            row["arcsize"] = 0
            row.update(figures.pressure(spec.memory))
        return row

    return _rows(now, params, sample)


def guest_rrd(cluster: SimCluster, guest: GuestState, now: float, params: dict[str, str]) -> list[dict[str, Any]]:
    spec = guest.spec
    pve9 = cluster.node_major(guest.node) >= 9

    def sample(t: float) -> dict[str, float] | None:
        node = guest.node_at(t)
        if not cluster.nodes[node].online_at(t):
            return None
        figures = guest_figures(cluster, guest, t, node)
        row = {"cpu": figures.cpu, "maxcpu": spec.cpus, "mem": figures.mem, "maxmem": spec.memory,
               "disk": spec.disk * 0.4 if spec.type == "lxc" else 0, "maxdisk": spec.disk, **figures.rates}
        if pve9:
            row.update({"memhost": figures.mem, **guest_pressure(cluster, guest, figures, t, node)})
        return row

    return _rows(now, params, sample)
