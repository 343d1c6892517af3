"""Exporter fixtures: a frozen-clock demo simulator and the exporter serving it over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import CollectorOptions
from exporter.config import load_config
from exporter.http import ExporterApp, ServeOptions, make_http_server
from tests.support.sim import RunningSimulator, running_simulator

SampleKey = tuple[str, frozenset[tuple[str, str]]]


def parse_samples(text: str) -> dict[SampleKey, float]:
    """Every sample of a text exposition, by name and label set (parsed by prometheus-client)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class Scrape:
    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.text = response.text
        self.samples = parse_samples(response.text) if response.status_code == 200 else {}

    def value(self, metric: str, **labels: str) -> float | None:
        return self.samples.get((metric, frozenset(labels.items())))

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.samples}


def module_block(sim: RunningSimulator, token_file: Path, **extra: Any) -> dict[str, Any]:
    token_file.write_text(sim.token_value + "\n")
    block = {
        "host": sim.host,
        "user": sim.token_user,
        "token_name": sim.token_name,
        "token_value_file": str(token_file),
        "verify_ssl": sim.ca_path,
        "timeout": 10,  # generous: sim and exporter share this process; timeout tests set their own
    }
    block.update(extra)
    return block


def write_config(path: Path, modules: Mapping[str, Mapping[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump(dict(modules)))
    return path


class RunningExporter:
    """The exporter's WSGI app on a free port, in this process."""

    def __init__(self, config_path: Path, options: ServeOptions) -> None:
        self.app = ExporterApp(load_config(config_path, env={}), options)
        self.server = make_http_server("127.0.0.1:0", self.app)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def get(self, path: str = "/metrics", headers: Mapping[str, str] | None = None, **params: str) -> requests.Response:
        # The bound only keeps a broken exporter from hanging the suite; nothing is timed.
        return requests.get(self.url + path, params=params, headers=dict(headers or {}), timeout=60)

    def scrape(self, path: str = "/metrics", **params: str) -> Scrape:
        return Scrape(self.get(path, headers=None, **params))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
        self.app.close()


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    """The demo cluster with its clock frozen, so every call sees the same figures."""
    with running_simulator("demo", time_scale=0) as running:
        yield running


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator[Callable[..., RunningExporter]]:
    started: list[RunningExporter] = []

    def start(
        modules: Mapping[str, Mapping[str, Any]],
        collectors: CollectorOptions = CollectorOptions(),
        scrape_timeout: float = 9.0,
    ) -> RunningExporter:
        config = write_config(tmp_path / f"exporter-{len(started)}.yml", modules)
        exporter = RunningExporter(config, ServeOptions(collectors, scrape_timeout=scrape_timeout, max_workers=4))
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        exporter.stop()


@pytest.fixture
def exporter(sim: RunningSimulator, start_exporter: Callable[..., RunningExporter], tmp_path: Path) -> RunningExporter:
    """The exporter with one `default` module pointing at `sim`."""
    return start_exporter({"default": module_block(sim, tmp_path / "token")})


def api_get(sim: RunningSimulator, path: str) -> Any:
    """The simulator's answer, read directly (not through pveapi): the ground truth."""
    response = requests.get(
        f"{sim.url}{path}",
        headers={"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_value}"},
        verify=sim.ca_path,
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["data"]
