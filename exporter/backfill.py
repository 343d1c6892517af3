"""History for Prometheus from the simulator, through the exporter's own collectors.

The simulator's load model is a pure function of virtual time, so an hour of history is one
scrape per step with the simulator's clock set to that step. Samples are written as
OpenMetrics with their timestamps and turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`; Prometheus loads the blocks from its data
directory. A real cluster cannot be backfilled this way: its API only keeps rrddata
averages, not the present at an arbitrary past time.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import structlog
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.registry import Collector

from pveapi.errors import ConfigError, PvebalanceError
from pveapi.settings import ConnectionSettings, Secret

from .collectors import CollectorOptions, cluster_registry, concerns
from .scrape import scrape
from .target import Target

log = structlog.get_logger("pvebalance.exporter")

_STEP_TIMEOUT = 60.0  # a history step is not bound by Prometheus' scrape timeout
_CHUNK_SAMPLES = 2_000_000  # samples per OpenMetrics file, to bound memory on large clusters


@dataclass(frozen=True)
class BackfillReport:
    start: float
    end: float
    steps: int
    samples: int
    chunks: int


class SimClock:
    """The simulator's admin clock (`/_sim/clock`)."""

    def __init__(self, admin_url: str, verify: bool | str, token: Secret | None = None) -> None:
        self._url = admin_url.rstrip("/") + "/clock"
        self._verify = verify  # per request: a session's verify loses to REQUESTS_CA_BUNDLE
        self._session = requests.Session()
        if token is not None:
            self._session.headers["Authorization"] = f"Bearer {token.reveal()}"

    def _request(self, method: str, body: dict[str, Any] | None = None) -> tuple[float, float]:
        try:
            response = self._session.request(method, self._url, json=body, timeout=10, verify=self._verify)
            response.raise_for_status()
            data = response.json()
            return float(data["time"]), float(data["time_scale"])
        except requests.HTTPError as exc:
            status = exc.response.status_code
            hint = " - pass the simulator's admin token with --sim-admin-token-env" if status in (401, 403) else ""
            raise PvebalanceError(f"simulator admin API {self._url}: HTTP {status}{hint}") from None
        except requests.RequestException as exc:
            raise PvebalanceError(
                f"simulator admin API {self._url}: cannot connect ({type(exc).__name__}) - check --sim-admin-url"
            ) from None
        except (ValueError, KeyError, TypeError):
            raise PvebalanceError(f"simulator admin API {self._url}: the answer is not a clock - is this a pvebalance-sim?") from None

    def get(self) -> tuple[float, float]:
        """(virtual epoch now, time scale)."""
        return self._request("GET")

    def set(self, epoch: float, time_scale: float) -> None:
        self._request("POST", {"set": epoch, "time_scale": time_scale})


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class _BlockWriter:
    """Collects timestamped samples family by family and hands full chunks to promtool."""

    def __init__(self, output_dir: Path, promtool: str, chunk_samples: int, labels: Mapping[str, str]) -> None:
        self._output_dir = output_dir
        self._labels = dict(labels)
        self._promtool = promtool
        self._chunk_samples = chunk_samples
        self._families: dict[str, Metric] = {}
        self._pending = 0
        self.samples = 0
        self.chunks = 0

    def add(self, timestamp: float, families: Iterable[Metric]) -> None:
        for family in families:
            merged = self._families.get(family.name)
            if merged is None:
                merged = self._families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            merged.samples.extend(
                sample._replace(labels={**sample.labels, **self._labels}, timestamp=timestamp) if self._labels
                else sample._replace(timestamp=timestamp)
                for sample in family.samples
            )
            self._pending += len(family.samples)
        if self._pending >= self._chunk_samples:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with tempfile.TemporaryDirectory(prefix="pvebalance-backfill-") as tmp:
            path = Path(tmp) / f"chunk-{self.chunks}.om"
            path.write_bytes(generate_latest(_Families(self._families.values())))
            command = [self._promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(self._output_dir)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise PvebalanceError(f"promtool could not create blocks: {detail[-1] if detail else f'exit {done.returncode}'}")
        self.samples += self._pending
        self.chunks += 1
        self._families = {}
        self._pending = 0


def steps(start: float, end: float, step: float) -> Iterator[float]:
    count = int((end - start) // step)
    for index in range(count + 1):
        yield start + index * step


def backfill(
    settings: ConnectionSettings,
    sim_admin_url: str,
    start: float,
    end: float,
    step: float,
    output_dir: Path,
    options: CollectorOptions = CollectorOptions(),
    promtool: str = "promtool",
    admin_token: Secret | None = None,
    labels: Mapping[str, str] | None = None,
    chunk_samples: int = _CHUNK_SAMPLES,
    on_step: Callable[[int, int, float], None] = lambda done, total, timestamp: None,
) -> BackfillReport:
    """Write TSDB blocks to `output_dir` with one scrape every `step` seconds from `start` to `end`.

    `labels` are added to every sample: give the `job` and `instance` live scrapes will carry, and
    the live series continue the backfilled ones. The simulator's clock is restored afterwards
    (to where it would be had it kept running). `on_step(done, total, timestamp)` follows each
    step, for progress.
    """
    if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(step)) or step <= 0 or end < start:
        raise ConfigError(f"backfill: need step > 0 and start <= end (got step {step}, {end - start:.0f} s of history)")
    if shutil.which(promtool) is None:
        raise ConfigError(f"backfill: {promtool} not found; install Prometheus (Debian: apt-get install prometheus)")
    output_dir.mkdir(parents=True, exist_ok=True)
    clock = SimClock(sim_admin_url, settings.verify_ssl, admin_token)
    original_time, time_scale = clock.get()
    real_started = time.monotonic()
    target = Target(settings, max_workers=8)
    writer = _BlockWriter(output_dir, promtool, chunk_samples, labels or {})
    count = 0
    total = sum(1 for _ in steps(start, end, step))
    log.info("backfill_started", cluster=settings.host, start=start, end=end, step=step, output=str(output_dir))
    try:
        for timestamp in steps(start, end, step):
            clock.set(timestamp, 0)
            result = scrape(target, concerns(options), _STEP_TIMEOUT)
            if result.error is not None:
                raise result.error
            writer.add(timestamp, cluster_registry(result, options).collect())
            count += 1
            on_step(count, total, timestamp)
        writer.flush()
    finally:
        clock.set(original_time + (time.monotonic() - real_started) * time_scale, time_scale)
        target.close()
    report = BackfillReport(start=start, end=end, steps=count, samples=writer.samples, chunks=writer.chunks)
    log.info("backfill_done", cluster=settings.host, steps=count, samples=writer.samples, output=str(output_dir))
    return report
