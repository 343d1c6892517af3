"""`pvebalance-demo`: run the whole pvebalance loop on the simulator's `demo` cluster.

Steps: start the simulator; write the last day of history through the exporter's own
collector into Prometheus TSDB blocks (`pvebalance-exporter backfill`); start the exporter
and Prometheus (from the PATH); run `pvebalance plan`; with --apply, carry the plan out and
plan again to show the balanced cluster. Every process started here is stopped on exit,
on Ctrl-C and on SIGTERM. Without Prometheus the controller plans on live API figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import requests

from pveapi.errors import PvebalanceError
from pveapi.logsetup import configure_logging
from simulator.scenario import ALL_PRIVILEGES, Credential
from simulator.server import Simulator

from .configs import EXPORTER_JOB, controller_config, exporter_config, prometheus_config
from .processes import Children, free_port, wait_until

PROG = "pvebalance-demo"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the console scripts installed beside this interpreter
READ_ONLY = ("Sys.Audit", "VM.Audit", "Datastore.Audit", "Pool.Audit")
# requests lets these variables override a per-session CA bundle; the demo's children must
# verify the simulator's own certificate, so they are not passed on.
_CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="carry out the plan, then show the cluster again")
    parser.add_argument("--hours", type=float, default=24.0, help="history to backfill (default 24)")
    parser.add_argument("--step", type=float, default=300.0,
                        help="seconds between backfilled samples (default 300; Prometheus' 5 min lookback "
                             "still sees a sample at every instant)")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="simulated seconds per real second (default: the scenario's, 60 for demo)")
    parser.add_argument("--scenario", default="demo", help="simulator scenario: built-in name or file (default demo)")
    parser.add_argument("--stay", action="store_true",
                        help="keep everything running at the end, until Ctrl-C, to look around in Prometheus")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (configs, logs, TSDB)")
    return parser


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="pvebalance-demo-"))
        self.children = Children(self.workdir)
        self.simulator: Simulator | None = None
        self.prometheus_url: str | None = None
        self._tokens = {"exporter": secrets.token_hex(16), "controller": secrets.token_hex(16)}

    # -- steps ----------------------------------------------------------------------------
    def run(self) -> int:
        has_prometheus = shutil.which("prometheus") is not None and shutil.which("promtool") is not None
        sim = self._start_simulator()
        say("simulator", f"{sim.url} ({self.args.scenario} scenario, {len(sim.scenario.nodes)} nodes, "
                         f"{len(sim.scenario.guests)} guests, time x{sim.clock.scale:g})")
        exporter_file = self._write("exporter.yml", exporter_config(
            self.api_host, "monitor@pve", "demo-exporter", self._token_file("exporter"), sim.cert_path))
        if has_prometheus:
            self._backfill(exporter_file)
        else:
            say("prometheus", "NOT FOUND on the PATH (Debian: apt-get install prometheus): the controller plans "
                              "on live figures from the Proxmox API, without history")
        exporter_url = self._start_exporter(exporter_file)
        say("exporter", f"{exporter_url}/metrics")
        if has_prometheus:
            self._start_prometheus(exporter_url.removeprefix("http://"))
            say("prometheus", f"{self.prometheus_url} (the exporter scraped every 5 s, alert and recording rules "
                              "from prometheus/rules)")
            self._show_nodes("the cluster now")
        controller_file = self._write("controller.yml", controller_config(
            self.api_host, "root@pam", "demo-controller", self._token_file("controller"), sim.cert_path,
            self.prometheus_url, self.workdir / "state.json"))
        window = "1h averages from Prometheus" if has_prometheus else "live figures"
        heading(f"pvebalance plan ({window})")
        self._controller(controller_file, "plan")
        if not self.args.apply:
            print(f"\nTo carry this plan out: bash scripts/demo.sh --apply", flush=True)
        else:
            heading("pvebalance apply")
            code = self._controller(controller_file, "apply")
            if code != 0:
                print(f"(pvebalance apply exited with {code})", flush=True)
            if has_prometheus:
                time.sleep(12)  # two scrape and rule intervals, so Prometheus shows the new placement
                self._show_nodes("the cluster after the moves")
            heading("pvebalance plan again (its 1h averages still include the time before the moves)")
            self._controller(controller_file, "plan")
        if self.args.stay:
            print(f"\nEverything is still running; configs and logs in {self.workdir}. Ctrl-C stops it all.", flush=True)
            signal.pause()
        return 0

    @property
    def api_host(self) -> str:
        assert self.simulator is not None
        return f"127.0.0.1:{self.simulator.port}"

    def _start_simulator(self) -> Simulator:
        tokens = [
            Credential("monitor@pve", self._tokens["exporter"], {"/": READ_ONLY}, "demo-exporter"),
            Credential("root@pam", self._tokens["controller"], {"/": ALL_PRIVILEGES}, "demo-controller"),
        ]
        self.simulator = Simulator(self.args.scenario, host="127.0.0.1", port=0,
                                   time_scale=self.args.time_scale, tokens=tokens).start()
        return self.simulator

    def _backfill(self, exporter_file: Path) -> None:
        assert self.simulator is not None
        started = time.monotonic()
        steps = int(self.args.hours * 3600 // self.args.step) + 1
        print(f"{'history':<11} backfilling {self.args.hours:g} h ({steps} scrapes through the exporter's "
              "collector, then promtool) ...", flush=True)
        env = {k: v for k, v in os.environ.items() if k not in _CA_OVERRIDES}
        done = subprocess.run(
            [str(BIN / "pvebalance-exporter"), "backfill", f"--config.file={exporter_file}",
             f"--sim-admin-url={self.simulator.admin_url}", f"--hours={self.args.hours:g}",
             f"--step={self.args.step:g}", f"--output={self.workdir / 'tsdb'}", "--log.format=json"],
            capture_output=True, text=True, env=env, check=False,
        )
        (self.workdir / "backfill.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise PvebalanceError(f"backfill failed: {last}")
        say("history", f"{done.stdout.strip()} in {time.monotonic() - started:.0f} s")

    def _start_exporter(self, config_file: Path) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if k not in _CA_OVERRIDES}
        process = self.children.start("exporter", [
            str(BIN / "pvebalance-exporter"), f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}", "--collector.pressure", "--log.format=json"], env)
        wait_until(lambda: _http_ok(f"{url}/health"), "exporter", 30, process)
        return url

    def _start_prometheus(self, exporter_address: str) -> None:
        port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        config = self._write("prometheus.yml", prometheus_config(
            ROOT / "prometheus" / "prometheus.yml", {EXPORTER_JOB: exporter_address}, "5s"))
        process = self.children.start("prometheus", [
            str(shutil.which("prometheus")), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d", "--log.level=warn"])
        wait_until(lambda: _http_ok(f"{self.prometheus_url}/-/ready"), "prometheus", 60, process)
        # The first live scrape and rule evaluation, so the plan sees fresh figures.
        wait_until(lambda: bool(self._query("pvebalance:cluster_imbalance:ratio")),
                   "prometheus: first scrape of the exporter and rule evaluation", 60, process)

    def _controller(self, config_file: Path, command: str) -> int:
        env = {k: v for k, v in os.environ.items() if k not in _CA_OVERRIDES}
        argv = [str(BIN / "pvebalance"), f"--config={config_file}", "--log-format=console", command]
        return subprocess.run(argv, env=env, check=False).returncode

    # -- helpers --------------------------------------------------------------------------
    def _query(self, expr: str) -> dict[str, float]:
        """Instant query -> value by `node` label ("" for a series without one); {} on any failure."""
        try:
            answer = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=5).json()
            return {r["metric"].get("node", ""): float(r["value"][1]) for r in answer["data"]["result"]}
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return {}

    def _show_nodes(self, title: str) -> None:
        """Live node figures from the recording rules the dashboards use."""
        cpu, mem = self._query("pvebalance:node_cpu:ratio"), self._query("pvebalance:node_memory:ratio")
        guests = self._query("pvebalance:node_running_guests:count")
        imbalance = self._query("pvebalance:cluster_imbalance:ratio").get("")
        heading(f"{title} (live, from Prometheus)")
        print(f"  {'node':<6} {'cpu':>5} {'memory':>7} {'guests':>7}")
        for node in sorted(cpu):
            print(f"  {node:<6} {cpu[node]:>5.0%} {mem.get(node, 0):>7.0%} {guests.get(node, 0):>7.0f}")
        print(f"  imbalance {'unknown' if imbalance is None else f'{imbalance:.3f}'} (0 = even, 1 = all on one node)",
              flush=True)

    def _write(self, name: str, text: str) -> Path:
        path = self.workdir / name
        path.write_text(text, encoding="utf-8")
        return path

    def _token_file(self, which: str) -> Path:
        path = self.workdir / f"{which}.token"
        path.touch(mode=0o600)
        path.write_text(self._tokens[which] + "\n", encoding="utf-8")
        return path

    def close(self) -> None:
        self.children.stop()
        if self.simulator is not None:
            self.simulator.stop()
        if self.args.keep:
            print(f"kept {self.workdir}", flush=True)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def say(what: str, text: str) -> None:
    print(f"{what:<11} {text}", flush=True)


def heading(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.hours <= 0 or args.step <= 0:
        print(f"{PROG}: --hours and --step must be positive", file=sys.stderr)
        return 2
    configure_logging("console", "warning")
    signal.signal(signal.SIGTERM, _interrupt)
    demo = Demo(args)
    try:
        return demo.run()
    except PvebalanceError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        for name in ("exporter", "prometheus"):
            tail = demo.children.log_tail(name)
            if tail:
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: stopped", file=sys.stderr)
        return 130
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
