"""A real Prometheus (/usr/bin/prometheus) for tests, and history written with promtool.

    with running_prometheus(tmp_path / "tsdb") as prom:
        requests.get(prom.url + "/api/v1/query", params={"query": "up"})

History is written before start-up as TSDB blocks (`write_history`), exactly as a backfill
would, so tests query real PromQL over hours of samples without waiting for scrapes.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

# One sample: metric name, labels, unix time in seconds, value.
Sample = tuple[str, Mapping[str, str], float, float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_prometheus(
    data_dir: Path,
    config: str = "global:\n  scrape_interval: 15s\n",
    extra_args: Iterable[str] = (),
    ready_timeout: float = 60.0,
) -> PrometheusServer:
    """Start Prometheus on a free port over `data_dir`; return once /-/ready answers 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir.parent / f"{data_dir.name}-prometheus.yml"
    config_path.write_text(config, encoding="utf-8")
    log_path = data_dir.parent / f"{data_dir.name}-prometheus.log"
    last_error = ""
    for _attempt in range(3):  # another process may grab the free port before Prometheus binds it
        port = free_port()
        log = log_path.open("ab")
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=30d",
                "--log.level=warn",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        server = PrometheusServer(f"http://127.0.0.1:{port}", data_dir, process, log_path)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(requests.RequestException):
                if requests.get(server.url + "/-/ready", timeout=2).status_code == 200:
                    return server
            time.sleep(0.2)
        server.stop()
        last_error = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"Prometheus did not become ready:\n{last_error}")


@contextlib.contextmanager
def running_prometheus(data_dir: Path, **kwargs: object) -> Iterator[PrometheusServer]:
    server = start_prometheus(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


def openmetrics(samples: Iterable[Sample]) -> str:
    """Samples as OpenMetrics text, grouped by family and series, oldest first (promtool needs both)."""
    families: dict[str, dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]] = {}
    for name, labels, ts, value in samples:
        families.setdefault(name, {}).setdefault(tuple(sorted(labels.items())), []).append((ts, value))
    lines: list[str] = []
    for name, series in families.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, points in series.items():
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.extend(f"{name}{{{label_text}}} {value!r} {ts:.3f}" for ts, value in sorted(points))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def write_history(data_dir: Path, samples: Iterable[Sample]) -> None:
    """Write samples as TSDB blocks into `data_dir` with promtool (Prometheus must not be running on it)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / f"{data_dir.name}-history.om"
    source.write_text(openmetrics(samples), encoding="utf-8")
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data_dir)],
        check=True,
        capture_output=True,
    )
