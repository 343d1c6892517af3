"""Start a real Prometheus (`/usr/bin/prometheus`, Debian package) for a test, on a free port.

    with running_prometheus(tmp_path / "data") as prom:            # empty config
        prom.query('pve_up{id="node/pve1"}', at=1763700000)
    with running_prometheus(tmp_path / "data", scrape_configs=[...]) as prom: ...

The data directory may already hold TSDB blocks (backfill, or `write_history` below for
hand-written samples); Prometheus loads them at start.
The process is stopped (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from demoloop.processes import http_ok, wait_until
from pveapi.errors import PvebalanceError
from testkit.processes import free_port, stop_process

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# One sample: metric name, labels, unix time in seconds, value.
Sample = tuple[str, Mapping[str, str], float, float]


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    data_dir: Path
    log_path: Path

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the `result` list of /api/v1/query."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=30)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body.get('error')}")
        return list(body["data"]["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query, or None when it returns nothing."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"query {expr!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])


@contextmanager
def running_prometheus(
    data_dir: Path,
    scrape_configs: Sequence[dict[str, Any]] = (),
    scrape_interval: str = "15s",
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[RunningPrometheus]:
    data_dir.mkdir(parents=True, exist_ok=True)
    work = data_dir.parent
    config_path = work / f"prometheus-{data_dir.name}.yml"
    config_path.write_text(
        yaml.safe_dump({"global": {"scrape_interval": scrape_interval}, "scrape_configs": list(scrape_configs)})
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / f"prometheus-{data_dir.name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(url, process, log_path, ready_timeout)
            yield RunningPrometheus(url=url, data_dir=data_dir, log_path=log_path)
        finally:
            stop_process(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    try:
        wait_until(lambda: http_ok(f"{url}/-/ready"), f"prometheus at {url}", timeout, process)
    except PvebalanceError as exc:
        tail = log_path.read_text(errors="replace").splitlines()[-5:]
        raise RuntimeError(f"{exc}; see {log_path}: " + " | ".join(tail)) from None


def openmetrics(samples: Iterable[Sample]) -> str:
    """Samples as OpenMetrics text, grouped by family and series, oldest first (promtool needs both)."""
    families: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = {}
    for name, labels, ts, value in samples:
        families.setdefault(name, {}).setdefault(tuple(sorted(labels.items())), []).append((ts, value))
    lines: list[str] = []
    for name, series in families.items():
        lines.append(f"# TYPE {name} gauge")
        for pairs, points in series.items():
            label_text = ",".join(f'{k}="{v}"' for k, v in pairs)
            lines.extend(f"{name}{{{label_text}}} {value!r} {ts:.3f}" for ts, value in sorted(points))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_history(data_dir: Path, samples: Iterable[Sample]) -> None:
    """Write hand-made samples as TSDB blocks into `data_dir` with promtool, before Prometheus starts on it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / f"{data_dir.name}-history.om"
    source.write_text(openmetrics(samples), encoding="utf-8")
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
    )
