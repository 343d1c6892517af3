"""What one controller cycle costs: `.venv/bin/python bench/controller.py [--scenario large]`.

Starts `pvebalance-sim` as its own process (virtual clock frozen) and a real Prometheus over
an hour of synthetic exporter history for every node and guest of the scenario, then times
the three PromQL history queries, a whole observation (API + PromQL) and a whole planning
cycle (observation, plan, migrate precondition checks), and counts the API requests each
cycle makes. Writes a markdown table to bench/results/controller-<scenario>.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import arguments  # noqa: E402
from controller.config import parse_config  # noqa: E402
from controller.cycle import run_cycle  # noqa: E402
from controller.observe import observe  # noqa: E402
from controller.promql import PromQL  # noqa: E402
from pveapi.client import PveClient  # noqa: E402
from testkit.prometheus import Sample, running_prometheus, write_history  # noqa: E402

TOKEN_ID, TOKEN_VALUE = "root@pam!bench", "00000000-0000-4000-8000-00000000be9c"


def synthetic_history(resources: list[dict[str, Any]], end: float) -> Iterator[Sample]:
    """An hour at 60 s for every node and guest, shaped like the exporter's series."""
    for entry in resources:
        if entry.get("type") not in ("node", "qemu", "lxc"):
            continue
        labels = {"id": entry["id"]}
        for step in range(61):
            ts = end - 3600 + step * 60
            wobble = 0.8 + 0.4 * ((step * 7 + zlib.crc32(entry["id"].encode())) % 10) / 10
            yield "pve_cpu_usage_ratio", labels, ts, float(entry.get("cpu") or 0.0) * wobble
            yield "pve_cpu_usage_limit", labels, ts, float(entry.get("maxcpu") or 0)
            yield "pve_memory_usage_bytes", labels, ts, float(entry.get("mem") or 0)
            yield "pve_memory_size_bytes", labels, ts, float(entry.get("maxmem") or 0)


def timed(call: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples, result


def row(name: str, samples: list[float]) -> str:
    return f"| {name} | {len(samples)} | {statistics.median(samples):.0f} | {max(samples):.0f} |"


def start_simulator(scenario: str, port: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """pvebalance-sim in its own process (client and server do not share a GIL), clock frozen;
    returns it with its `sim_started` event (url, cert)."""
    command = [sys.executable, "-m", "simulator.cli", "--scenario", scenario, "--port", str(port),
               "--time-scale", "0", "--log-format", "json", "--token", f"{TOKEN_ID}={TOKEN_VALUE}"]
    server = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    return server, json.loads(server.stderr.readline())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="large", help="a simulator scenario (demo, large or a file)")
    parser.add_argument("--runs", type=arguments.count, default=5, help="timed repetitions of each step")
    parser.add_argument("--port", type=arguments.port, default=18302, help="the simulator's port")
    args = parser.parse_args()
    server, started = start_simulator(args.scenario, args.port)
    try:
        admin = started["url"].replace("/api2/json", "/_sim")
        host = f"127.0.0.1:{args.port}"
        proxmox = {"host": host, "user": "root@pam", "token_name": "bench", "token_value": TOKEN_VALUE,
                   "verify_ssl": started["cert"], "timeout": 120}
        client = PveClient(parse_config({"proxmox": proxmox}, "bench").proxmox)
        resources = client.get("/cluster/resources")
        now = float(requests.get(f"{admin}/clock", verify=started["cert"], timeout=30).json()["time"])
        with tempfile.TemporaryDirectory() as work:
            data = Path(work) / "tsdb"
            write_started = time.perf_counter()
            write_history(data, synthetic_history(resources, now - 30))
            write_seconds = time.perf_counter() - write_started
            with running_prometheus(data) as prom:
                config = parse_config({"proxmox": proxmox, "prometheus": {"url": prom.url, "max_data_age": "10m"}}, "bench")
                assert config.prometheus is not None
                promql = PromQL(config.prometheus)
                history_ms, history = timed(lambda: promql.history(now), args.runs)
                observe_ms, observation = timed(lambda: observe(client, promql, now), args.runs)
                requests.post(f"{admin}/requests/reset", verify=started["cert"], timeout=30)
                cycle_ms, cycle = timed(lambda: run_cycle(client, promql, config, at=now), args.runs)
                counts = requests.get(f"{admin}/requests", verify=started["cert"], timeout=30).json()
    finally:
        server.terminate()
        server.wait(timeout=30)

    guests = len(observation.inventory.guests)
    nodes = len(observation.inventory.nodes)
    per_cycle = {k: v / args.runs for k, v in sorted(counts["counts"].items())}
    lines = [
        f"# pvebalance controller cycle, scenario `{args.scenario}` ({nodes} nodes, {guests} guests)",
        "",
        f"Command: `.venv/bin/python bench/controller.py --scenario {args.scenario} --runs {args.runs}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; simulator in its own process (clock frozen), "
        f"real Prometheus 2.42 over 1 h of synthetic history at 60 s ({write_seconds:.1f} s to write with promtool); "
        "2 shared cores.",
        "",
        "| step | n | median ms | max ms |",
        "|---|---|---|---|",
        row(f"PromQL history ({history.queries} queries, {len(history.cpu_cores)} series each)", history_ms),
        row("observe (4 API calls + PromQL)", observe_ms),
        row(f"whole cycle: observe + plan + precondition checks ({len(cycle.plan.moves)} moves)", cycle_ms),
        "",
        f"Figures from: {dict(cycle.plan.sources)}; imbalance {cycle.plan.imbalance_before:.3f} -> "
        f"{cycle.plan.imbalance_after:.3f}; precondition checks per cycle: {cycle.precondition_calls}.",
        "",
        "API requests per cycle:",
        "",
        "| request | per cycle |",
        "|---|---|",
        *[f"| {k} | {v:g} |" for k, v in per_cycle.items()],
        "",
    ]
    out = ROOT / "bench" / "results" / f"controller-{args.scenario}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
