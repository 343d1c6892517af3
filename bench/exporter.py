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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.processes import free_port, stop_process  # noqa: E402 - needs ROOT on the path
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "exporter.md"
TOKEN_USER, TOKEN_NAME, TOKEN_VALUE = "monitor@pve", "bench", "00000000-0000-4000-8000-0000000be4c4"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def ensure_bench_requirements() -> None:
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

    def get(self, path: str) -> dict:
        import requests

        return requests.get(self.admin + path, verify=self.ca, timeout=60).json()

    def post(self, path: str, body: dict | None = None) -> None:
        import requests

        requests.post(self.admin + path, json=body or {}, verify=self.ca, timeout=60).raise_for_status()

    def calls(self) -> int:
        return int(self.get("/requests")["total"])

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


def exporters(sim: Sim, work: Path, port: int) -> list[Exporter]:
    ours = work / "pvebalance-exporter.yml"
    ours.write_text(json.dumps({"default": {
        "host": sim.host, "user": TOKEN_USER, "token_name": TOKEN_NAME, "token_value": TOKEN_VALUE,
        "verify_ssl": sim.ca, "timeout": 60,
    }}))
    theirs = work / "pve.yml"
    theirs.write_text(json.dumps({"default": {
        "user": TOKEN_USER, "token_name": TOKEN_NAME, "token_value": TOKEN_VALUE, "verify_ssl": sim.ca,
    }}))
    listen = f"127.0.0.1:{port}"
    pve = f"/pve?module=default&target={sim.host}"
    return [
        Exporter("pvebalance-exporter", "/metrics",
                 [str(BIN / "pvebalance-exporter"), f"--config.file={ours}", f"--web.listen-address={listen}",
                  "--scrape.timeout=120", "--log.format=json", "--log.level=warning"], port),
        Exporter("prometheus-pve-exporter (cluster only)", f"{pve}&cluster=1&node=0",
                 [str(BIN / "pve_exporter"), f"--config.file={theirs}", f"--web.listen-address={listen}"], port),
        Exporter("prometheus-pve-exporter (node only)", f"{pve}&cluster=0&node=1",
                 [str(BIN / "pve_exporter"), f"--config.file={theirs}", f"--web.listen-address={listen}"], port),
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
    api_wait_s: float | None = None  # pvebalance-exporter's own scrape_duration: time spent on API calls


def measure(exporter: Exporter, sim: Sim, scrapes: int, label: str, work: Path) -> Row:
    import requests

    port = exporter.port
    log = (work / f"exporter-{port}.log").open("wb")
    process = subprocess.Popen(exporter.command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{exporter.url_path}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{exporter.name} did not start: see {log.name}") from None
                time.sleep(0.2)
        # Warm-up: sessions, caches (/cluster/status, /version), imports.
        warm = requests.get(url, timeout=600)
        ok = warm.status_code == 200
        calls_before, cpu_before, sim_before = sim.calls(), cpu_seconds(process.pid), cpu_seconds(sim.process.pid)
        times: list[float] = []
        body = b""
        for _ in range(scrapes):
            started = time.perf_counter()
            response = requests.get(url, timeout=600)
            times.append(time.perf_counter() - started)
            ok = ok and response.status_code == 200
            body = response.content
        calls = (sim.calls() - calls_before) / scrapes
        cpu = (cpu_seconds(process.pid) - cpu_before) / scrapes
        sim_cpu = (cpu_seconds(sim.process.pid) - sim_before) / scrapes
        rss = peak_rss_mib(process.pid)
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        return Row(label, exporter.name, calls, statistics.median(times), cpu, sim_cpu, rss, samples, ok,
                   api_wait(body))
    finally:
        stop_process(process)
        log.close()


def api_wait(body: bytes) -> float | None:
    for line in body.decode().splitlines():
        if line.startswith("pvebalance_exporter_scrape_duration_seconds{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def floor(sim: Sim, scrapes: int, label: str) -> Row:
    """Fetching and decoding /cluster/resources alone, over a kept-alive session."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"PVEAPIToken={TOKEN_USER}!{TOKEN_NAME}={TOKEN_VALUE}"
    url = f"https://{sim.host}/api2/json/cluster/resources"
    json.loads(session.get(url, timeout=600, verify=sim.ca).content)
    sim_before = cpu_seconds(sim.process.pid)
    cpu_before = time.process_time()
    times = []
    entries = 0
    for _ in range(scrapes):
        started = time.perf_counter()
        entries = len(json.loads(session.get(url, timeout=600, verify=sim.ca).content)["data"])
        times.append(time.perf_counter() - started)
    return Row(
        label, "floor: GET+decode /cluster/resources", 1, statistics.median(times),
        (time.process_time() - cpu_before) / scrapes, (cpu_seconds(sim.process.pid) - sim_before) / scrapes,
        0.0, entries, True,
    )


# --- report ----------------------------------------------------------------------------------

def report(rows: list[Row], online: dict[str, int], sizes: dict[str, int], scrapes: int, seconds: float) -> str:
    lines = [
        "# pvebalance-exporter benchmark",
        "",
        f"`.venv/bin/python bench/exporter.py` ({scrapes} scrapes per cell after one warm-up; the simulator "
        f"and every exporter run as separate processes on this machine; {seconds:.0f} s in all). "
        "`of which API calls` is pvebalance-exporter's own `pvebalance_exporter_scrape_duration_seconds` in the last answer (the rest is building and rendering the metrics). CPU and RSS are the exporter's whole process tree (gunicorn's master and worker for "
        "prometheus-pve-exporter). `sim CPU` is what the simulator spent per scrape. `samples` = sample "
        "lines in one answer (for the floor: entries in /cluster/resources).",
        "",
        "| scenario | exporter | API calls / scrape | median scrape (s) | of which API calls (s) "
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
        ours = cells.get("pvebalance-exporter")
        if ours is None:
            continue
        guests = sizes[scenario]
        expected = 1 + online[scenario]
        verdict = "met" if round(ours.calls, 1) == expected else "MISSED"
        lines.append(f"- {scenario}: API calls per scrape {ours.calls:.1f}; target 1 + online nodes = {expected}: {verdict}.")
        theirs = cells.get("prometheus-pve-exporter (cluster only)")
        if theirs is not None:
            ratio = ours.median_s / theirs.median_s
            target = f"; target at 2,000 guests <= 0.5x: {'met' if ratio <= 0.5 else 'MISSED'}" if guests == 2000 else ""
            lines.append(
                f"- {scenario}: median scrape {ours.median_s:.3f} s vs prometheus-pve-exporter cluster-only "
                f"{theirs.median_s:.3f} s = {ratio:.2f}x (CPU {ours.cpu_s / theirs.cpu_s:.2f}x){target}."
            )
        base = cells.get("floor: GET+decode /cluster/resources")
        if base is not None:
            ratio = ours.median_s / base.median_s
            target = f"; target at 10,000 guests <= 2x: {'met' if ratio <= 2 else 'MISSED'}" if guests == 10000 else ""
            lines.append(
                f"- {scenario}: median scrape {ours.median_s:.3f} s vs floor {base.median_s:.3f} s = {ratio:.1f}x{target}."
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,2000,10000", help="guest counts; 10000 is the built-in `large`")
    parser.add_argument("--scrapes", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    ensure_bench_requirements()
    started = time.monotonic()
    rows: list[Row] = []
    online: dict[str, int] = {}
    sizes: dict[str, int] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-exporter-"))
    try:
        cert, key = make_cert(work)
        for size in (int(s) for s in args.sizes.split(",")):
            scenario = (
                Scenario("10,000 guests / 64 nodes (large)", 10000, 64, "large") if size == 10000
                else Scenario(f"{size:,} guests / {max(4, size // 125)} nodes", size, max(4, size // 125),
                              str(scenario_file(work, size, max(4, size // 125))))
            )
            print(f"== {scenario.label}", file=sys.stderr)
            with running_sim(scenario.source, work, cert, key) as sim:
                online[scenario.label] = sim.online_nodes()
                sizes[scenario.label] = scenario.guests
                rows.append(floor(sim, args.scrapes, scenario.label))
                for exporter in exporters(sim, work, free_port()):
                    row = measure(exporter, sim, args.scrapes, scenario.label, work)
                    print(f"   {row}", file=sys.stderr)
                    rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(rows, online, sizes, args.scrapes, time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
