"""The whole pvebalance loop on one machine: simulator, history, exporter, Prometheus, controller.

`LocalStack` starts each part on 127.0.0.1 and free ports, as separate processes except the
simulator (in-process), and stops all of them on `close()`. The demo narrates it; the stack's
end-to-end tests drive it.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from pveapi.errors import PvebalanceError
from pveapi.progress import Progress
from simulator.scenario import ALL_PRIVILEGES, Credential
from simulator.server import Simulator

from .configs import (
    CONTROLLER_JOB,
    EXPORTER_JOB,
    alertmanager_config,
    controller_config,
    exporter_config,
    prometheus_config,
    recording_rule_passes,
)
from .processes import Children, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PROMETHEUS = ROOT / "prometheus" / "prometheus.yml"
PRODUCT_ALERTMANAGER = ROOT / "prometheus" / "alertmanager.yml"
PRODUCT_RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
BIN = Path(sys.executable).parent  # the console scripts installed beside this interpreter
READ_ONLY = ("Sys.Audit", "VM.Audit", "Datastore.Audit", "Pool.Audit")


def prometheus_installed() -> bool:
    return shutil.which("prometheus") is not None and shutil.which("promtool") is not None


class LocalStack:
    def __init__(self, workdir: Path, scenario: str | Path = "demo", time_scale: float | None = None,
                 tokens: Sequence[Credential] = ()) -> None:
        """`tokens`: more API tokens the simulator accepts, besides the stack's own."""
        self.workdir = workdir
        self.extra_tokens = tuple(tokens)
        self.scenario = scenario
        self.time_scale = time_scale
        self.children = Children(workdir)
        self.simulator: Simulator | None = None
        self.exporter_url: str | None = None
        self.prometheus_url: str | None = None
        self.controller_url: str | None = None
        self.alertmanager_url: str | None = None
        self._controller_port = free_port()
        self._exporter_port = free_port()  # known before the backfill, which stamps it as `instance`
        self._prometheus_port = free_port()
        self._prometheus_argv: list[str] = []
        self.history: tuple[float, float] | None = None  # the backfilled range (wall-clock epochs)
        self._tokens = {"exporter": secrets.token_hex(16), "controller": secrets.token_hex(16),
                        "webhook": secrets.token_hex(16), "api_viewer": secrets.token_hex(16),
                        "api_operator": secrets.token_hex(16)}

    # -- the parts, in the order they start -----------------------------------------------
    def start_simulator(self) -> Simulator:
        tokens = [
            Credential("monitor@pve", self._tokens["exporter"], {"/": READ_ONLY}, "stack-exporter"),
            Credential("root@pam", self._tokens["controller"], {"/": ALL_PRIVILEGES}, "stack-controller"),
            *self.extra_tokens,
        ]
        self.simulator = Simulator(self.scenario, host="127.0.0.1", port=0, time_scale=self.time_scale,
                                   tokens=tokens).start()
        return self.simulator

    @property
    def sim(self) -> Simulator:
        if self.simulator is None:
            raise PvebalanceError("the simulator is not started")
        return self.simulator

    @property
    def exporter_file(self) -> Path:
        path = self.workdir / "exporter.yml"
        if not path.exists():
            self._write("exporter.yml", exporter_config(
                f"127.0.0.1:{self.sim.port}", "monitor@pve", "stack-exporter", self._token_file("exporter"),
                self.sim.cert_path))
        return path

    @property
    def exporter_instance(self) -> str:
        return f"127.0.0.1:{self._exporter_port}"

    def backfill(self, hours: float, step: float) -> str:
        """History through the exporter's collector into Prometheus' data directory; its summary
        line. Its samples carry the `job` and `instance` labels the live scrapes will carry, so
        live series continue the history as on a real stack. Its progress goes to stderr."""
        # A whole second, given to the exporter as --end (the earlier of the wall clock and the
        # simulator's, as the exporter's own default): the rules' backfill starts there too, so its
        # first evaluation (within one step after it) finds a sample.
        end = float(int(min(time.time(), self.sim.clock.now())))
        self.history = (end - hours * 3600, end)
        done = subprocess.run(
            [str(BIN / "pvebalance-exporter"), "backfill", f"--config.file={self.exporter_file}",
             f"--sim-admin-url={self.sim.admin_url}", f"--hours={hours!r}", f"--step={step!r}", f"--end={end:.0f}",
             f"--output={self.workdir / 'tsdb'}", f"--label=job={EXPORTER_JOB}",
             f"--label=instance={self.exporter_instance}", "--log.format=json", "--log.level=warning"],
            stdout=subprocess.PIPE, text=True, check=False,  # stderr: its progress and errors, as they come
        )
        if done.returncode != 0:
            raise PvebalanceError(f"backfill failed (exit {done.returncode}): its error is above")
        return done.stdout.strip()

    def backfill_rules(self, step: float) -> str:
        """The recording rules' history over the backfilled range, with `promtool tsdb
        create-blocks-from rules` against this Prometheus. promtool cannot read a rule's series
        while it writes them, so rules that read other rules' series come in later passes, each
        after Prometheus was restarted over the previous pass' blocks."""
        if self.history is None or self.prometheus_url is None:
            raise PvebalanceError("backfill the history and start Prometheus before backfilling the rules")
        start, end = self.history
        passes = recording_rule_passes(PRODUCT_RULES, step)
        with Progress("recording rules", len(passes), "passes") as progress:
            for number, text in enumerate(passes, start=1):
                progress.update(number - 1, f"pass {number}: promtool create-blocks-from rules")
                # One file for every pass: promtool offsets a group's evaluations within its
                # interval by a hash of the group's name and file, so with one of each every pass
                # evaluates at the instants where the previous pass wrote its samples.
                rules = self._write("rules-backfill.yml", text)
                with tempfile.TemporaryDirectory(dir=self.workdir) as blocks:
                    done = subprocess.run(
                        [str(shutil.which("promtool")), "tsdb", "create-blocks-from", "rules", "--quiet",
                         f"--start={start:.0f}", f"--end={end:.0f}", f"--url={self.prometheus_url}",
                         f"--eval-interval={step:g}s", f"--output-dir={blocks}", str(rules)],
                        capture_output=True, text=True, check=False)
                    if done.returncode != 0:
                        detail = (done.stderr or done.stdout).strip().splitlines()
                        raise PvebalanceError(f"promtool could not backfill the rules: {detail[-1] if detail else '?'}")
                    for block in Path(blocks).iterdir():
                        block.rename(self.workdir / "tsdb" / block.name)
                progress.update(number, f"pass {number}: restarting Prometheus over the new blocks")
                self.restart_prometheus()
        return f"{len(passes)} passes over {sum(text.count('record:') for text in passes)} rules"

    def start_exporter(self) -> str:
        self.exporter_url = f"http://{self.exporter_instance}"
        process = self.children.start("exporter", [
            str(BIN / "pvebalance-exporter"), f"--config.file={self.exporter_file}",
            f"--web.listen-address={self.exporter_instance}", "--collector.pressure", "--log.format=json"])
        wait_until(lambda: http_ok(f"{self.exporter_url}/health"), "exporter", 30, process)
        return self.exporter_url

    def reload_prometheus(self) -> None:
        """Re-read prometheus.yml and the rule files (Prometheus' SIGHUP)."""
        self.children.send_signal("prometheus", signal.SIGHUP)

    def start_alertmanager(self) -> str:
        """Debian's Alertmanager with the product's routes; the controller's webhook gets its alerts."""
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise PvebalanceError("Alertmanager not found: apt-get install prometheus-alertmanager")
        unreachable = f"127.0.0.1:{free_port()}"  # nothing listens: e-mail and Slack fail locally
        slack = self._write("slack_webhook_url", f"http://{unreachable}/\n")
        secret_files = {"webhook_token": self._token_file("webhook"), "slack_webhook_url": slack,
                        "smtp_password": self._write("smtp_password", "unused\n")}
        config = self._write("alertmanager.yml", alertmanager_config(
            PRODUCT_ALERTMANAGER, secret_files, f"http://127.0.0.1:{self._controller_port}", unreachable))
        port = free_port()
        self.alertmanager_url = f"http://127.0.0.1:{port}"
        process = self.children.start("alertmanager", [
            binary, f"--config.file={config}", f"--storage.path={self.workdir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn"])
        wait_until(lambda: http_ok(f"{self.alertmanager_url}/-/ready"), "alertmanager", 60, process)
        return self.alertmanager_url

    def start_prometheus(self, interval: str = "5s", rule_files: list[Path] | None = None,
                         scrape_controller: bool = False) -> str:
        """Prometheus over the backfilled data directory, scraping the exporter (and the
        controller), sending alerts to the Alertmanager if one was started."""
        if self.exporter_url is None:
            raise PvebalanceError("start the exporter before Prometheus")
        targets = {EXPORTER_JOB: self.exporter_url.removeprefix("http://")}
        if scrape_controller:
            targets[CONTROLLER_JOB] = f"127.0.0.1:{self._controller_port}"
        alertmanager = self.alertmanager_url.removeprefix("http://") if self.alertmanager_url else None
        config = prometheus_config(PRODUCT_PROMETHEUS, targets, interval, rule_files, alertmanager)
        self.prometheus_url = f"http://127.0.0.1:{self._prometheus_port}"
        self._prometheus_argv = [
            str(shutil.which("prometheus")), f"--config.file={self._write('prometheus.yml', config)}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self._prometheus_port}",
            "--storage.tsdb.retention.time=30d", "--log.level=warn"]
        return self._launch_prometheus()

    def restart_prometheus(self) -> str:
        """Stop Prometheus and start it again, on the same port and data: it loads blocks added
        to its data directory at start."""
        self.children.stop("prometheus")
        return self._launch_prometheus()

    def _launch_prometheus(self) -> str:
        url = self.prometheus_url
        if url is None:
            raise RuntimeError("Prometheus is launched after start_prometheus() chose its address")
        process = self.children.start("prometheus", self._prometheus_argv)
        wait_until(lambda: http_ok(f"{url}/-/ready"), "prometheus", 60, process)
        # The first live scrape and rule evaluation, so what comes next sees fresh figures.
        wait_until(lambda: bool(self.query("pvebalance:cluster_imbalance:ratio")),
                   "prometheus: first scrape of the exporter and rule evaluation", 60, process)
        return url

    def write_controller_config(self, name: str = "controller.yml", prometheus_url: str | None = None,
                                **run: Any) -> Path:
        """The controller's config, querying `prometheus_url` (default: the stack's Prometheus);
        `run` overrides the run block (automation, interval, hold_time...)."""
        return self._write(name, controller_config(
            f"127.0.0.1:{self.sim.port}", "root@pam", "stack-controller", self._token_file("controller"),
            self.sim.cert_path, prometheus_url or self.prometheus_url,
            {"state_file": str(self.workdir / "state.json"), "listen": f"127.0.0.1:{self._controller_port}",
             "webhook_token_file": str(self._token_file("webhook")), **run},
            {role: self._token_file(f"api_{role}") for role in ("viewer", "operator")}))

    def start_controller(self, **run: Any) -> str:
        """`pvebalance run` with its /metrics, /health and /plan on the port Prometheus scrapes."""
        config = self.write_controller_config(**run)
        self.controller_url = f"http://127.0.0.1:{self._controller_port}"
        process = self.children.start("controller", [
            str(BIN / "pvebalance"), f"--config={config}", "--log-format=json", "--log-level=info", "run"])
        wait_until(lambda: http_ok(f"{self.controller_url}/metrics"), "controller", 60, process)
        return self.controller_url

    def pvebalance(self, *args: str, capture: bool = False, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `pvebalance` CLI with `config` (default: the stack's controller config, written on first use)."""
        if config is None:
            config = self.workdir / "controller.yml"
            if not config.exists():
                self.write_controller_config()
        return subprocess.run([str(BIN / "pvebalance"), f"--config={config}", "--log-format=console", *args],
                              capture_output=capture, text=True, check=False)

    # -- reading Prometheus ---------------------------------------------------------------
    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result list; [] when Prometheus cannot answer (yet)."""
        try:
            answer = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10).json()
            return list(answer["data"]["result"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return []

    # -- housekeeping ---------------------------------------------------------------------
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
        """Stop every process started here, then the simulator."""
        self.children.stop()
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
