"""How fast the simulator answers: `.venv/bin/python bench/sim_bench.py [--scenario large]`.

Starts `pvebalance-sim` as its own process (so client and server do not share a GIL), then
times /cluster/resources (cached within a 10 s virtual tick, and rebuilt on every tick),
per-node calls, and concurrent clients. Writes a markdown table to bench/results/sim-<scenario>.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import arguments  # noqa: E402 - needs ROOT on the path

TOKEN = "root@pam!bench=00000000-0000-4000-8000-00000000be9c"


def timed(call: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"| {name} | {len(samples)} | {statistics.median(samples):.1f} | {p95:.1f} | {max(samples):.1f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="large")
    parser.add_argument("--runs", type=arguments.count, default=50)
    parser.add_argument("--port", type=arguments.port, default=18001)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--scenario", args.scenario, "--port", str(args.port),
         "--time-scale", "0", "--log-format", "json", "--token", TOKEN],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stderr is not None
        started = json.loads(server.stderr.readline())
        url, cert = started["url"], started["cert"]
        admin = url.replace("/api2/json", "/_sim")
        session = requests.Session()
        headers = {"Authorization": f"PVEAPIToken={TOKEN}"}

        def get(path: str, **params: str) -> None:
            session.get(f"{url}{path}", params=params, headers=headers, verify=cert, timeout=60).raise_for_status()

        def new_tick() -> None:
            session.post(f"{admin}/clock", json={"advance": 10}, verify=cert, timeout=60).raise_for_status()

        def rebuilt() -> None:
            new_tick()
            get("/cluster/resources")

        first = timed(lambda: get("/cluster/resources"), 1)
        rows = [
            row("GET /cluster/resources, first call (builds the cache)", first),
            row("GET /cluster/resources, same tick (cached)", timed(lambda: get("/cluster/resources"), args.runs)),
            row("GET /cluster/resources?type=vm, same tick", timed(lambda: get("/cluster/resources", type="vm"), args.runs)),
            row("advance 10 s + GET /cluster/resources (rebuilt)", timed(rebuilt, max(5, args.runs // 5))),
        ]
        nodes = [n["node"] for n in session.get(f"{url}/nodes", headers=headers, verify=cert, timeout=60).json()["data"]]
        rows.append(row("GET /nodes/{node}/status", timed(lambda: get(f"/nodes/{nodes[0]}/status"), args.runs)))
        rows.append(row("GET /nodes/{node}/rrddata?timeframe=hour",
                        timed(lambda: get(f"/nodes/{nodes[0]}/rrddata", timeframe="hour"), max(5, args.runs // 5))))
        clients, per_client = 8, max(5, args.runs // 2)

        def client(_: int) -> list[float]:
            own = requests.Session()
            return timed(lambda: own.get(f"{url}/nodes/{nodes[0]}/status", headers=headers, verify=cert, timeout=60)
                         .raise_for_status(), per_client)

        wall = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            concurrent = [s for samples in pool.map(client, range(clients)) for s in samples]
        wall = time.perf_counter() - wall
        rows.append(row(f"GET /nodes/{{node}}/status, {clients} concurrent clients", concurrent))
    finally:
        server.terminate()
        server.wait(timeout=10)
    out = ROOT / "bench" / "results" / f"sim-{args.scenario}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    table = "\n".join([
        f"# pvebalance-sim, scenario `{args.scenario}`",
        "",
        f"Command: `.venv/bin/python bench/sim_bench.py --scenario {args.scenario} --runs {args.runs}` "
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; server in its own process, "
        "client over HTTPS with keep-alive, virtual clock frozen.",
        "",
        "| call | n | median ms | p95 ms | max ms |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"{clients} concurrent clients: {len(concurrent) / wall:.0f} requests/s overall.",
        "",
    ])
    out.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
