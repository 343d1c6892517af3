"""Where one pvebalance-exporter scrape of 10,000 guests spends its time, phase by phase.

    .venv/bin/python bench/exporter_phases.py     # writes bench/results/exporter-phases.md

Runs the simulator's `large` scenario as a subprocess (as bench/exporter.py does) and times, in
this process, each phase of a scrape with the exporter's own code: the API calls, parsing,
building the metric families, the text encoding (prometheus-client's and the exporter's), gzip, and a whole scrape
through the exporter's WSGI app (no HTTP server, so no sending). Medians over the rounds.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The exporter's and bench/exporter.py's code, importable once ROOT is on the path.
from bench import arguments  # noqa: E402
from bench.exporter import SCRAPE_INTERVAL, TOKEN_NAME, TOKEN_USER, TOKEN_VALUE, Sim, make_cert, running_sim  # noqa: E402
from exporter.cli import GC_THRESHOLDS  # noqa: E402
from exporter.collectors import CollectorOptions, concerns, resources_registry, rest_registry  # noqa: E402
from exporter.collectors.families import encode, encode_parts  # noqa: E402
from exporter.collectors.node_status import NodeStatusCollector  # noqa: E402
from exporter.compression import GzipStream, KeptSegments  # noqa: E402
from exporter.config import parse_config  # noqa: E402
from exporter.http import ExporterApp, ServeOptions  # noqa: E402
from exporter.kept import KeptTexts, Part  # noqa: E402
from exporter.scrape import scrape  # noqa: E402
from pveapi.inventory import parse_resources  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "exporter-phases.md"
REFERENCE = "encode them with prometheus-client generate_latest (the reference)"
# Built afresh each round, as every scrape does: the values' text is written once per family
# object, and unchanged state families come from the exporter's caches.
GET = "GET /cluster/resources through pveapi (proxmoxer)"
PARSE = "parse it (pveapi.inventory.parse_resources)"
OTHERS = "build + encode the other families (pve_up, node status, info, self-metrics)"
STREAMED = "render + gzip the /cluster/resources families, gzip streamed on its own thread (as a scrape does)"
WHOLE = ("whole scrape through the WSGI app (phases overlap: the /cluster/resources families are rendered "
         "while the status calls are out)")
STATUS = "one /nodes/{node}/status call per online node (64) on the target's pool, nothing else running"
ENCODE = "build + encode them with the exporter's encoder (byte-identical), as a scrape does"


Phase = tuple[str, Callable[[], Any], Callable[[], Any] | None]  # name, what is timed, what comes first untimed


def median_seconds(phases: list[Phase], rounds: int) -> list[tuple[str, float]]:
    """Each round runs every phase once, in turn, so background load falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in phases}
    for _ in range(rounds):
        for name, action, before in phases:
            if before is not None:
                before()
            started = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - started)
    return [(name, statistics.median(times[name])) for name, _, _ in phases]


def streamed_gzip(parts: Iterator[Part], kept: KeptSegments) -> bytes | None:
    stream = GzipStream(1, kept)
    for part in parts:
        stream.write(part.text, part.kept)
    return stream.close()


class Prebuilt(Collector):
    """Families built beforehand, so encoding is timed on its own."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def measure(sim: Sim, rounds: int) -> tuple[list[tuple[str, float]], int]:
    gc.set_threshold(*GC_THRESHOLDS)  # as `pvebalance-exporter` serves
    host, ca = sim.host, sim.ca
    config = parse_config({"default": {"host": host, "user": TOKEN_USER, "token_name": TOKEN_NAME,
                                       "token_value": TOKEN_VALUE, "verify_ssl": ca, "timeout": 60}}, "bench")
    options = ServeOptions(CollectorOptions(), scrape_timeout=120)
    app = ExporterApp(config, options)
    target = app.targets.get("default", config.default_module.settings)
    session = requests.Session()
    session.headers["Authorization"] = f"PVEAPIToken={TOKEN_USER}!{TOKEN_NAME}={TOKEN_VALUE}"
    environ = {"PATH_INFO": "/metrics", "QUERY_STRING": "", "HTTP_ACCEPT_ENCODING": "gzip"}

    def whole_scrape() -> bytes:
        return b"".join(app(dict(environ), lambda status, headers: None))

    def next_interval() -> None:
        sim.next_interval(session)

    for _ in range(2):  # warm-up: connections, the simulator's caches, /cluster/status and /version
        whole_scrape()
    # Two scrape intervals' answers, each phase rendering them in turn with its own kept texts:
    # every render sees figures that moved since its last one, as every scrape of a real cluster
    # does; what did not move is kept.
    answers = []
    for _ in range(2):
        next_interval()
        answers.append(parse_resources(target.client.get("/cluster/resources")))
    encode_turn, streamed_turn = itertools.cycle(answers), itertools.cycle(answers)
    encode_kept, streamed_kept = KeptTexts(), KeptTexts()
    raw = target.client.get("/cluster/resources")
    inventory = parse_resources(raw)
    families = list(resources_registry(inventory, options.collectors).collect())
    prebuilt = CollectorRegistry(auto_describe=False)
    prebuilt.register(Prebuilt(families))
    result = scrape(target, concerns(options.collectors), 120)
    text = encode(families) + encode(rest_registry(result, options.collectors, target.stats).collect())
    assert encode(families) == generate_latest(prebuilt)
    status_calls = list(NodeStatusCollector.calls(inventory))
    kept = KeptSegments()
    samples = sum(len(family.samples) for family in families)
    phases: list[Phase] = [
        ("floor: GET + JSON decode /cluster/resources (requests)",
         lambda: json.loads(session.get(f"https://{host}/api2/json/cluster/resources", verify=ca).content), None),
        (GET, lambda: target.client.get("/cluster/resources"), None),
        (PARSE, lambda: parse_resources(raw), None),
        (f"build its families ({samples:,} samples)", lambda: list(resources_registry(inventory, options.collectors).collect()),
         None),
        (REFERENCE, lambda: generate_latest(prebuilt), None),
        (ENCODE, lambda: encode(resources_registry(next(encode_turn), options.collectors).collect(), encode_kept), None),
        (STATUS, lambda: target.finish_calls(target.start_calls(status_calls), time.monotonic() + 60), None),
        (OTHERS, lambda: encode(rest_registry(result, options.collectors, target.stats).collect()), None),
        (f"gzip level 1 of the whole answer ({len(text) / 1e6:.1f} MB)", lambda: gzip.compress(text, compresslevel=1), None),
        (STREAMED, lambda: streamed_gzip(encode_parts(resources_registry(next(streamed_turn), options.collectors).collect(),
                                                      streamed_kept), kept), None),
        (WHOLE, whole_scrape, next_interval),
    ]
    try:
        return median_seconds(phases, rounds), samples
    finally:
        app.close()


def report(phases: list[tuple[str, float]], samples: int, rounds: int, load: tuple[str, str]) -> str:
    floor = phases[0][1]
    times = dict(phases)
    reference, encoded = times[REFERENCE], times[ENCODE]
    serial = sum(times[name] for name in (GET, PARSE, STATUS, STREAMED, OTHERS))
    lines = [
        "# pvebalance-exporter: one 10,000-guest scrape, phase by phase",
        "",
        f"`.venv/bin/python bench/exporter_phases.py` (simulator `large`, 64 nodes, as a separate process; "
        f"{rounds} rounds in this process with the exporter's code, each running every phase once in turn; "
        f"medians. The machine's 2 cores may carry other work (see the load average), so compare within this table; load average "
        f"at start {load[0]}, at the end {load[1]} (1 / 5 / 15 min)). The exporter's encodes render two scrape "
        f"intervals' answers in turn, and the simulator's clock moves {SCRAPE_INTERVAL} s (untimed) before each whole "
        "scrape: every render sees usage figures that moved since the last, as on a real cluster.",
        "",
        "| phase | median (s) | x floor |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {seconds:.3f} | {seconds / floor:.1f} |" for name, seconds in phases]
    lines += [
        "",
        f"prometheus-client encodes {reference / samples * 1e6:.1f} µs a sample ({reference / floor:.1f}x the floor for "
        f"the /cluster/resources families, on families built beforehand); the exporter's build + encode "
        f"{encoded / samples * 1e6:.1f} µs ({encoded / floor:.1f}x), the same bytes.",
        "",
        f"The whole scrape is {times[WHOLE] / floor:.1f}x the floor; the phases it runs (GET, parse, status calls, "
        f"render + streamed gzip, other families) add up to {serial / floor:.1f}x: they hardly overlap, as all but "
        f"the deflating hold the one interpreter's lock.",
    ]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    return " / ".join(f"{figure:.1f}" for figure in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=arguments.count, default=7)
    parser.add_argument("--output", type=arguments.output_file, default=RESULTS)
    args = parser.parse_args()
    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    try:
        cert, key = make_cert(work)
        with running_sim("large", work, cert, key) as sim:
            phases, samples = measure(sim, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(phases, samples, args.rounds, (load_at_start, load_average()))
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
