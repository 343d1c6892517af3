"""The three ways to run pvebalance agree: the Debian package (debian/, packaging/), the
container image (Dockerfile) and the compose stack (docker-compose.yml) use the same ports,
config and state paths, user and pinned dependency versions. Reads files only: no build."""

from __future__ import annotations

import re
import shlex
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from controller.cli import DEFAULT_CONFIG as CONTROLLER_CONFIG
from controller.config import parse_config as parse_controller_config
from exporter.cli import DEFAULT_CONFIG as EXPORTER_CONFIG
from exporter.cli import DEFAULT_LISTEN as EXPORTER_LISTEN
from exporter.config import parse_config as parse_exporter_config
from tests.package.debroot import read_unit
from tests.stack.test_compose import compose_config

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "packaging/requirements.lock"
ETC = ROOT / "packaging/etc/pvebalance"
BUILD_ONLY = {"setuptools", "wheel", "cython"}
# The interpreter the lock is for: bookworm's python3 (the package) and the image's base.
PYTHON = "3.11"


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            name, sep, version = requirement.partition("==")
            assert sep, f"{requirement!r}: every line pins one version with =="
            pins[_name(name)] = version.strip()
    return pins


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return _pins(LOCK.read_text(encoding="utf-8").splitlines())


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11 (tomllib)")
    data: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return data


def _service(name: str) -> dict[str, str]:
    return dict(read_unit(ROOT / "debian" / name)["Service"])


def _exec_start(name: str) -> list[str]:
    return shlex.split(_service(name)["ExecStart"])


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def test_the_lock_pins_pyprojects_versions_and_build_backend(lock: dict[str, str], pyproject: dict[str, Any]) -> None:
    direct = _pins(pyproject["project"]["dependencies"])
    assert {name: lock.get(name) for name in direct} == direct
    assert {_name(r) for r in pyproject["build-system"]["requires"]} <= set(lock)


def test_the_lock_holds_every_distribution_the_dependencies_pull_in(lock: dict[str, str]) -> None:
    # Read from the installed distributions' own metadata (setup.sh installed the same names).
    assert f"FROM python:{PYTHON}-slim-bookworm" in _dockerfile()
    environment = {"python_version": PYTHON, "python_full_version": f"{PYTHON}.0", "extra": ""}
    for name in set(lock) - BUILD_ONLY:
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                assert _name(requirement.name) in lock, f"{name} needs {text}: add it to {LOCK.name}"


def test_package_and_image_install_from_the_lock() -> None:
    rules = (ROOT / "debian/rules").read_text(encoding="utf-8")
    assert "PIP_CONSTRAINT := $(CURDIR)/packaging/requirements.lock" in rules
    dockerfile = _dockerfile()
    assert "COPY packaging/requirements.lock ./packaging/" in dockerfile
    assert "PIP_CONSTRAINT=packaging/requirements.lock pip install" in dockerfile


def test_units_run_the_programs_on_their_default_config_paths() -> None:
    exporter = _exec_start("pvebalance.pvebalance-exporter.service")
    assert exporter[0] == "/usr/bin/pvebalance-exporter" and f"--config.file={EXPORTER_CONFIG}" in exporter
    controller = _exec_start("pvebalance.service")
    assert controller[0] == "/usr/bin/pvebalance" and controller[-1] == "run"
    assert controller[controller.index("--config") + 1] == CONTROLLER_CONFIG
    installed = {line.split()[0] for line in (ROOT / "debian/pvebalance.install").read_text().splitlines()}
    assert {f"packaging{EXPORTER_CONFIG}", f"packaging{CONTROLLER_CONFIG}"} <= installed


def test_package_image_and_compose_agree_on_user_paths_and_ports(tmp_path: Path) -> None:
    stack = compose_config(tmp_path)["services"]
    dockerfile = _dockerfile()
    config = yaml.safe_load((ETC / "config.yaml").read_text(encoding="utf-8"))
    for name in ("pvebalance.service", "pvebalance.pvebalance-exporter.service"):
        service = _service(name)
        assert re.search(rf"^USER {service['User']}$", dockerfile, re.M)
        assert f"--home-dir /var/lib/{service['StateDirectory']}" in dockerfile
        assert service["WorkingDirectory"] == f"/var/lib/{service['StateDirectory']}"
    state_dir = "/var/lib/" + _service("pvebalance.service")["StateDirectory"]
    assert Path(config["run"]["state_file"]).parent == Path(state_dir)
    assert any(v["target"] == state_dir for v in stack["controller"]["volumes"] if v["type"] == "volume")
    compose_controller = yaml.safe_load(compose_config(tmp_path)["configs"]["controller"]["content"])
    assert compose_controller["run"]["state_file"] == config["run"]["state_file"]
    for compose_service in ("exporter", "controller"):
        assert all(c["target"].startswith(str(Path(CONTROLLER_CONFIG).parent) + "/") for c in stack[compose_service]["configs"])

    expose = re.search(r"^EXPOSE (.+)$", dockerfile, re.M)
    assert expose is not None
    exposed = {int(p) for p in expose.group(1).split()}
    exporter_port = _port(EXPORTER_LISTEN)  # the unit passes no listen address: the default
    assert not any(a.startswith("--web.listen-address") for a in _exec_start("pvebalance.pvebalance-exporter.service"))
    assert [p["target"] for p in stack["exporter"]["ports"]] == [exporter_port] and exporter_port in exposed
    controller_port = _port(config["run"]["listen"])
    assert [p["target"] for p in stack["controller"]["ports"]] == [controller_port] and controller_port in exposed


def test_the_shipped_example_configs_are_accepted_once_their_files_exist(tmp_path: Path) -> None:
    def local(text: str) -> str:
        return text.replace("/etc/pvebalance/", f"{tmp_path}/")

    for token in ("monitor", "balancer"):
        (tmp_path / f"{token}.token").write_text(f"{token}-secret\n")
    (tmp_path / "pve-root-ca.pem").write_text("placeholder: only its existence is checked when the config is read\n")
    exporter = parse_exporter_config(yaml.safe_load(local((ETC / "exporter.yml").read_text())), "exporter.yml", env={})
    assert exporter.default_module.settings.token_value is not None
    assert exporter.default_module.settings.token_value.reveal() == "monitor-secret"
    controller = parse_controller_config(yaml.safe_load(local((ETC / "config.yaml").read_text())), "config.yaml", env={})
    assert controller.proxmox.token_value is not None
    assert controller.proxmox.token_value.reveal() == "balancer-secret"
    assert controller.run.automation == "manual" and controller.prometheus is None
