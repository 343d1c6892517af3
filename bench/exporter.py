"""Benchmark: pvebalance-exporter against prometheus-pve-exporter 3.10.2 on the simulator.

    .venv/bin/python bench/exporter.py            # installs bench/requirements.txt if needed

For 500, 2,000 and 10,000 guests (the simulator's `large` scenario) it runs the simulator and
each exporter as subprocesses and measures, per scrape: API calls (from the simulator's request
counts), median wall time, exporter CPU seconds, the exporter's peak RSS, the simulator's CPU
seconds (to show when the simulator is the bottleneck), and the floor: fetching and decoding
/cluster/resources alone. Writes bench/results/exporter.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import arguments  # noqa: E402
from testkit.processes import free_port, stop_process  # noqa: E402 - needs ROOT on the path

BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "exporter.md"
FLOOR = "floor: GET+decode /cluster/resources"
TOKEN_USER, TOKEN_NAME, TOKEN_VALUE = "monitor@pve", "bench", "00000000-0000-4000-8000-0000000be4c4"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OURS = "pvebalance-exporter"
OURS_PLAIN = "pvebalance-exporter (no gzip)"
# What Prometheus 2.42 (/usr/bin/prometheus here) sends with every scrape, at its default
# 10 s scrape timeout; every exporter is asked the same way.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.42.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
# Virtual seconds between two scrapes: past the simulator's status cache tick (10 s, as PVE's),
# so every scrape reads new usage figures, as scrapes of a real cluster do (its figures move
# between any two scrapes Prometheus makes). A frozen clock would hand every exporter the same
# answer again, and whatever an exporter keeps between scrapes would look free.
SCRAPE_INTERVAL = 15


def ensure_bench_requirements() -> None:
    if sys.version_info < (3, 11):
        sys.exit("bench/exporter.py compares against prometheus-pve-exporter 3.10, which needs Python >= 3.11")
    try:
        import pve_exporter  # noqa: F401
    except ImportError:
        print("installing bench/requirements.txt ...", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
             str(ROOT / "bench" / "requirements.txt")],
            check=True,
        )


# --- process accounting (/proc) ------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    return total


def peak_rss_mib(pid: int) -> float:
    """Sum of VmHWM over the process tree (gunicorn runs a master and a worker)."""
    total_kib = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024


# --- the simulator ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    label: str
    guests: int
    nodes: int
    source: str  # a built-in name or a YAML path


def scenario_file(work: Path, guests: int, nodes: int) -> Path:
    path = work / f"bench-{guests}.yaml"
    path.write_text(json.dumps({
        "cluster": {"name": f"bench{guests}"},
        "seed": 7,
        "nodes": [],
        "guests": [],
        "generate": {
            "nodes": {"count": nodes, "prefix": "pve", "cores": 64, "memory": "512GiB"},
            "guests": {"count": guests, "first_vmid": 1000, "lxc_share": 0.3, "cpus": [1, 2, 4, 8],
                       "memory": ["1GiB", "2GiB", "4GiB", "8GiB"]},
        },
    }))
    return path


@dataclass
class Sim:
    process: subprocess.Popen[bytes]
    host: str
    ca: str

    @property
    def admin(self) -> str:
        return f"https://{self.host}/_sim"

    def get(self, path: str) -> dict[str, Any]:
        import requests

        answer: dict[str, Any] = requests.get(self.admin + path, verify=self.ca, timeout=60).json()
        return answer

    def post(self, path: str, body: dict[str, Any] | None = None) -> None:
        import requests

        requests.post(self.admin + path, json=body or {}, verify=self.ca, timeout=60).raise_for_status()

    def calls(self) -> int:
        return int(self.get("/requests")["total"])

    def next_interval(self, session: Any) -> None:
        """One scrape interval on: new figures, built by the simulator before the scrape is timed."""
        self.post("/clock", {"advance": SCRAPE_INTERVAL})
        session.get(f"https://{self.host}/api2/json/cluster/resources", timeout=600, verify=self.ca).raise_for_status()

    def online_nodes(self) -> int:
        return sum(1 for node in self.get("/state")["nodes"] if node["online"])


def make_cert(work: Path) -> tuple[Path, Path]:
    cert, key = work / "sim.crt", work / "sim.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@contextmanager
def running_sim(source: str, work: Path, cert: Path, key: Path) -> Iterator[Sim]:
    import requests

    port = free_port()
    log = (work / f"sim-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "pvebalance-sim"), "--scenario", source, "--port", str(port), "--time-scale", "0",
         "--cert", str(cert), "--key", str(key), "--token", f"{TOKEN_USER}!{TOKEN_NAME}={TOKEN_VALUE}",
         "--log-format", "json"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    sim = Sim(process, f"127.0.0.1:{port}", str(cert))
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"simulator exited: see {log.name}")
            try:
                requests.get(sim.admin + "/clock", verify=sim.ca, timeout=5).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield sim
    finally:
        stop_process(process, timeout=30)
        log.close()


# --- exporters -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exporter:
    name: str
    url_path: str  # what a scrape asks, relative to the exporter's base URL
    command: Sequence[str]
    port: int


def exporters(sim: Sim, work: Path) -> list[Exporter]:
    ours = work / "pvebalance-exporter.yml"
    ours.write_text(json.dumps({"default": {
        "host": sim.host, "user": TOKEN_USER, "token_name": TOKEN_NAME, "token_value": TOKEN_VALUE,
        "verify_ssl": sim.ca, "timeout": 60,
    }}))
    theirs = work / "pve.yml"
    theirs.write_text(json.dumps({"default": {
        "user": TOKEN_USER, "token_name": TOKEN_NAME, "token_value": TOKEN_VALUE, "verify_ssl": sim.ca,
    }}))
    pve = f"/pve?module=default&target={sim.host}"
    ports = [free_port() for _ in range(3)]
    return [
        Exporter(OURS, "/metrics",
                 [str(BIN / "pvebalance-exporter"), f"--config.file={ours}", f"--web.listen-address=127.0.0.1:{ports[0]}",
                  "--scrape.timeout=120", "--log.format=json", "--log.level=warning"], ports[0]),
        Exporter("prometheus-pve-exporter (cluster only)", f"{pve}&cluster=1&node=0",
                 [str(BIN / "pve_exporter"), f"--config.file={theirs}", f"--web.listen-address=127.0.0.1:{ports[1]}"],
                 ports[1]),
        Exporter("prometheus-pve-exporter (node only)", f"{pve}&cluster=0&node=1",
                 [str(BIN / "pve_exporter"), f"--config.file={theirs}", f"--web.listen-address=127.0.0.1:{ports[2]}"],
                 ports[2]),
    ]


@dataclass(frozen=True)
class Row:
    scenario: str
    exporter: str
    calls: float
    median_s: float
    cpu_s: float
    sim_cpu_s: float
    rss_mib: float
    samples: int
    ok: bool
    api_wait_s: float | None = None  # median of pvebalance-exporter's own scrape_duration


@dataclass
class Cell:
    """One exporter under measurement (or the floor, `process` None) and what it cost so far."""

    name: str
    url: str
    process: subprocess.Popen[bytes] | None = None
    times: list[float] = field(default_factory=list)
    calls: int = 0
    cpu: float = 0.0
    sim_cpu: float = 0.0
    ok: bool = True
    body: bytes = b""
    api_waits: list[float] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: dict(PROMETHEUS_HEADERS))


def start_exporter(exporter: Exporter, work: Path) -> Cell:
    import requests

    log = (work / f"exporter-{exporter.port}.log").open("wb")
    process = subprocess.Popen(exporter.command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"http://127.0.0.1:{exporter.port}/", timeout=2)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError(f"{exporter.name} did not start: see {log.name}") from None
            time.sleep(0.2)
    return Cell(exporter.name, f"http://127.0.0.1:{exporter.port}{exporter.url_path}", process)


def measure(exporters: list[Exporter], sim: Sim, scrapes: int, label: str, work: Path) -> list[Row]:
    """Scrape every exporter and the floor in turn, round after round, so background load on a
    shared machine falls on all of them alike; each scrape is accounted on its own."""
    import requests

    floor_session = requests.Session()
    floor_session.headers["Authorization"] = f"PVEAPIToken={TOKEN_USER}!{TOKEN_NAME}={TOKEN_VALUE}"
    floor = Cell(FLOOR, f"https://{sim.host}/api2/json/cluster/resources")
    cells = [floor]
    try:
        cells += [start_exporter(exporter, work) for exporter in exporters]
        ours = next(cell for cell in cells if cell.name == OURS)
        # The same process asked without gzip, to show what compression costs.
        cells.insert(cells.index(ours) + 1, Cell(OURS_PLAIN, ours.url, ours.process,
                                                 headers={**PROMETHEUS_HEADERS, "Accept-Encoding": "identity"}))
        for _ in range(2):  # warm-up: sessions, caches (/cluster/status, /version), imports
            for cell in cells:
                scrape_once(cell, sim, floor_session, record=False)
        for _ in range(scrapes):
            for cell in cells:
                scrape_once(cell, sim, floor_session, record=True)
        return [row_for(cell, label, scrapes) for cell in cells]
    finally:
        for cell in cells:
            if cell.process is not None and cell.name != OURS_PLAIN:  # that one shares OURS' process
                stop_process(cell.process)


def scrape_once(cell: Cell, sim: Sim, floor_session: Any, record: bool) -> None:
    import requests

    sim.next_interval(floor_session)
    calls, sim_cpu = sim.calls(), cpu_seconds(sim.process.pid)
    own_cpu = cpu_seconds(cell.process.pid) if cell.process is not None else time.process_time()
    started = time.perf_counter()
    if cell.process is None:
        response = floor_session.get(cell.url, timeout=600, verify=sim.ca)
        json.loads(response.content)
    else:
        response = requests.get(cell.url, headers=cell.headers, timeout=600)  # decompresses gzip, as Prometheus does
    elapsed = time.perf_counter() - started
    if not record:
        return
    cell.times.append(elapsed)
    cell.cpu += (cpu_seconds(cell.process.pid) if cell.process is not None else time.process_time()) - own_cpu
    cell.sim_cpu += cpu_seconds(sim.process.pid) - sim_cpu
    cell.calls += sim.calls() - calls
    cell.ok = cell.ok and response.status_code == 200
    cell.body = response.content
    wait = api_wait(response.content) if cell.process is not None else None
    if wait is not None:
        cell.api_waits.append(wait)


def row_for(cell: Cell, label: str, scrapes: int) -> Row:
    if cell.process is None:
        samples = len(json.loads(cell.body)["data"])
        rss = 0.0
    else:
        samples = sum(1 for line in cell.body.splitlines() if line and not line.startswith(b"#"))
        rss = peak_rss_mib(cell.process.pid)
    return Row(label, cell.name, cell.calls / scrapes, statistics.median(cell.times), cell.cpu / scrapes,
               cell.sim_cpu / scrapes, rss, samples, cell.ok,
               statistics.median(cell.api_waits) if cell.api_waits else None)


def api_wait(body: bytes) -> float | None:
    start = body.find(b"\npvebalance_exporter_scrape_duration_seconds{")
    if start < 0:
        return None
    line = body[start + 1:body.index(b"\n", start + 1)]
    return float(line.rsplit(b" ", 1)[1])


# --- concurrent scrapers ---------------------------------------------------------------------

@dataclass(frozen=True)
class Crowd:
    exporter: str
    scrapers: int
    seconds: float
    scrapes: int
    failed: int  # not 200, or no answer within the client's 60 s
    p50_s: float
    p99_s: float
    max_s: float
    rss_mib: float


def crowd(exporter: Exporter, sim: Sim, work: Path, scrapers: int, seconds: float) -> Crowd:
    """`scrapers` Prometheus-like clients scraping one fresh exporter process back to back for `seconds`."""
    import threading

    import requests

    cell = start_exporter(exporter, work)
    assert cell.process is not None
    latencies: list[float] = []
    failed = 0
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        nonlocal failed
        session = requests.Session()
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                ok = session.get(cell.url, headers=PROMETHEUS_HEADERS, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            with lock:
                latencies.append(time.perf_counter() - started)
                failed += 0 if ok else 1

    def clock() -> None:  # new figures every second (the answers' building falls on both exporters alike)
        while time.monotonic() < stop_at:
            sim.post("/clock", {"advance": SCRAPE_INTERVAL})
            time.sleep(1.0)

    try:
        threads = [threading.Thread(target=client) for _ in range(scrapers)] + [threading.Thread(target=clock)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rss = peak_rss_mib(cell.process.pid)
    finally:
        stop_process(cell.process)
    ordered = sorted(latencies)
    return Crowd(exporter.name, scrapers, seconds, len(ordered), failed, statistics.median(ordered),
                 ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], ordered[-1], rss)


def crowd_report(crowds: list[Crowd], label: str) -> list[str]:
    lines = [
        "", f"## {crowds[0].scrapers} concurrent scrapers, {crowds[0].seconds:.0f} s, {label}", "",
        "Each client scrapes back to back with Prometheus' headers (10 s scrape timeout, gzip) and waits up "
        "to 60 s; every exporter is a fresh process; RSS is its peak over the run. The simulator's clock moves "
        f"{SCRAPE_INTERVAL} s a second, so the figures change every second.", "",
        "| exporter | scrapes | failed | p50 (s) | p99 (s) | max (s) | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {c.exporter} | {c.scrapes} | {c.failed} | {c.p50_s:.2f} | {c.p99_s:.2f} | {c.max_s:.2f} "
              f"| {c.rss_mib:.0f} |" for c in crowds]
    ours = next((c for c in crowds if c.exporter == OURS), None)
    if ours is not None:
        lines += ["", f"- target p99 < 10 s: {ours.p99_s:.2f} s, {'met' if ours.p99_s < 10 else 'MISSED'}; "
                      f"peak RSS < 300 MiB: {ours.rss_mib:.0f} MiB, {'met' if ours.rss_mib < 300 else 'MISSED'}."]
    return lines


# --- report ----------------------------------------------------------------------------------

def report(rows: list[Row], online: dict[str, int], sizes: dict[str, int], scrapes: int, seconds: float,
           crowd_lines: Sequence[str] = (), load: str = "") -> str:
    lines = [
        "# pvebalance-exporter benchmark",
        "",
        f"`.venv/bin/python bench/exporter.py` ({scrapes} rounds after two warm-up rounds; in each round the floor "
        "and every exporter are scraped in turn, so background load on this shared 2-core machine falls on all "
        f"alike; the simulator and every exporter run as separate processes; {seconds:.0f} s in all; {load}). "
        f"Before each scrape the simulator's clock moves {SCRAPE_INTERVAL} s (a scrape interval, past its 10 s status "
        "cache), so every scrape reads new usage figures, and the simulator builds them before the scrape is timed. "
        "Every exporter is asked with Prometheus 2.42's scrape headers (`Accept-Encoding: gzip`, a 10 s "
        "`X-Prometheus-Scrape-Timeout-Seconds`), and the answer is decompressed and read whole; "
        f"`{OURS_PLAIN}` is the same process asked with `Accept-Encoding: identity`. "
        "`API calls + resources rendering` is the median of pvebalance-exporter's own "
        "`pvebalance_exporter_scrape_duration_seconds`: from its first API call until the last answer is in; "
        "between the two it parses /cluster/resources and renders its families (nine samples in ten) while the "
        "node calls are out. The rest of its median scrape is rendering the other families, gzip and sending. "
        "CPU and RSS are the exporter's whole process tree (gunicorn's master and worker for "
        "prometheus-pve-exporter). `sim CPU` is what the simulator spent per scrape. `samples` = sample "
        "lines in one answer (for the floor: entries in /cluster/resources).",
        "",
        "| scenario | exporter | API calls / scrape | median scrape (s) | API calls + resources rendering (s) "
        "| exporter CPU s / scrape | sim CPU s / scrape | peak RSS (MiB) | samples | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rss = f"{row.rss_mib:.0f}" if row.rss_mib else "-"
        wait = f"{row.api_wait_s:.3f}" if row.api_wait_s is not None else "-"
        lines.append(
            f"| {row.scenario} | {row.exporter} | {row.calls:.1f} | {row.median_s:.3f} | {wait} | {row.cpu_s:.3f} "
            f"| {row.sim_cpu_s:.3f} | {rss} | {row.samples} | {'yes' if row.ok else 'NO'} |"
        )
    lines += ["", "## Targets", ""]
    for scenario in dict.fromkeys(row.scenario for row in rows):
        cells = {row.exporter: row for row in rows if row.scenario == scenario}
        ours = cells.get(OURS)
        if ours is None:
            continue
        guests = sizes[scenario]
        expected = 1 + online[scenario]
        # /cluster/backup-info/not-backed-up is asked at most once a minute, each node's subscription
        # every 5 minutes, /cluster/status and /version too: a round may include some of them.
        verdict = "met" if expected <= round(ours.calls, 1) <= expected + 1 else "MISSED"
        lines.append(f"- {scenario}: API calls per scrape {ours.calls:.1f}; target 1 + online nodes = {expected} "
                     f"(+ the cached once-a-minute backup call): {verdict}.")
        theirs = cells.get("prometheus-pve-exporter (cluster only)")
        if theirs is not None:
            ratio = ours.median_s / theirs.median_s
            target = f"; target at 2,000 guests <= 0.25x: {'met' if ratio <= 0.25 else 'MISSED'}" if guests == 2000 else ""
            lines.append(
                f"- {scenario}: median scrape {ours.median_s:.3f} s vs prometheus-pve-exporter cluster-only "
                f"{theirs.median_s:.3f} s = {ratio:.2f}x (CPU {ours.cpu_s / theirs.cpu_s:.2f}x){target}."
            )
        base = cells.get(FLOOR)
        if base is not None:
            ratio = ours.median_s / base.median_s
            target = f"; target at 10,000 guests <= 4x: {'met' if ratio <= 4 else 'MISSED'}" if guests == 10000 else ""
            lines.append(
                f"- {scenario}: median scrape {ours.median_s:.3f} s vs floor {base.median_s:.3f} s = {ratio:.1f}x{target}."
            )
            plain = cells.get(OURS_PLAIN)
            if plain is not None:
                lines.append(
                    f"- {scenario}: without gzip {plain.median_s:.3f} s = {plain.median_s / base.median_s:.1f}x the floor."
                )
    lines += crowd_lines
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=arguments.counts, default=[500, 2000, 10000],
                        help="guest counts, comma-separated; 10000 is the built-in `large`")
    parser.add_argument("--scrapes", type=arguments.count, default=7)
    parser.add_argument("--output", type=arguments.output_file, default=RESULTS)
    parser.add_argument("--crowd", type=arguments.count_or_none, default=20,
                        help="concurrent scrapers on the largest size (0: skip)")
    parser.add_argument("--crowd-seconds", type=arguments.seconds, default=30.0)
    args = parser.parse_args(argv)
    ensure_bench_requirements()
    started = time.monotonic()
    rows: list[Row] = []
    online: dict[str, int] = {}
    sizes: dict[str, int] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    crowd_lines: list[str] = []
    load = "load average at start {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())
    try:
        cert, key = make_cert(work)
        for size in args.sizes:
            scenario = (
                Scenario("10,000 guests / 64 nodes (large)", 10000, 64, "large") if size == 10000
                else Scenario(f"{size:,} guests / {max(4, size // 125)} nodes", size, max(4, size // 125),
                              str(scenario_file(work, size, max(4, size // 125))))
            )
            print(f"== {scenario.label}", file=sys.stderr)
            with running_sim(scenario.source, work, cert, key) as sim:
                online[scenario.label] = sim.online_nodes()
                sizes[scenario.label] = scenario.guests
                for row in measure(exporters(sim, work), sim, args.scrapes, scenario.label, work):
                    print(f"   {row}", file=sys.stderr)
                    rows.append(row)
                if args.crowd and size == max(args.sizes):
                    crowds = [crowd(exporter, sim, work, args.crowd, args.crowd_seconds)
                              for exporter in exporters(sim, work)[:2]]  # ours and the peer's cluster mode
                    for result in crowds:
                        print(f"   {result}", file=sys.stderr)
                    crowd_lines = crowd_report(crowds, scenario.label)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load += ", at the end {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min, 2 cores)".format(*os.getloadavg())
    text = report(rows, online, sizes, args.scrapes, time.monotonic() - started, crowd_lines, load)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
