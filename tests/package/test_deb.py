"""The Debian package end to end: built from the checkout with the documented command, checked
by lintian and systemd-analyze, installed into a fresh Debian root, its programs started there as
their units would start them against a simulator, then upgraded over itself, removed and purged.

Needs root (mmdebstrap's root mode, chroot) and the tools scripts/ensure-package-tools.sh
installs; reaches Debian's mirror and PyPI. Measured: build 89 s, root 129 s, 4.5 min in all
(docs/install.md); the root is made while the package builds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml

from testkit.processes import free_port
from tests.package.debroot import depends_names, in_root, make_root, unit, unit_command
from tests.support.sim import running_simulator

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mmdebstrap's root mode and chroot")

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("pvebalance-exporter.service", "pvebalance.service")
PROGRAMS = ("pvebalance", "pvebalance-exporter", "pvebalance-sim")
# What the package's Depends name on this release (debian/control's, and the ones debhelper
# adds: the C libraries of the bundled wheels and the build's python3.X), and systemd, which
# systemd-analyze verify needs to resolve the units' targets. Known before the build, so the
# root is made while the package builds; `debian_root` fails naming any Depends not in it.
ROOT_PACKAGES = ["systemd", "python3", "libc6", "libgcc-s1", "libyaml-0-2", "adduser", "procps"]


@pytest.fixture(scope="module", autouse=True)
def root_in_making(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Future[None]]]:
    """A fresh Debian root, started first (autouse) so mmdebstrap runs while `built` builds."""
    root = tmp_path_factory.mktemp("debroot") / "root"
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield root, pool.submit(make_root, root, ROOT_PACKAGES)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist directory with the .deb and .changes, from README's command."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(["bash", "scripts/build-deb.sh", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def deb(built: Path) -> Path:
    (found,) = built.glob("pvebalance_*.deb")
    return found


@pytest.fixture(scope="module")
def debian_root(root_in_making: tuple[Path, Future[None]], deb: Path) -> Path:
    """The fresh root with the package installed (systemd installed, not running)."""
    root, making = root_in_making
    making.result()
    installed_names = in_root(root, "dpkg-query", "--show", "--showformat", "${Package}\\n").stdout.split()
    missing = [name for name in depends_names(deb) if name not in installed_names]
    assert not missing, f"the package now depends on {missing}: add them to ROOT_PACKAGES"
    shutil.copy(deb, root / "tmp" / deb.name)
    installed = in_root(root, "dpkg", "--install", f"/tmp/{deb.name}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return root


def _write_keeping_mode(path: Path, text: str) -> None:
    """As an admin's editor does: the file keeps its owner and mode."""
    with path.open("r+", encoding="utf-8") as f:
        f.truncate()
        f.write(text)


def _wait_http(url: str, process: subprocess.Popen[str], seconds: float = 120) -> requests.Response:
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"exited with {process.returncode}: {process.communicate()[1][-2000:]}"
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, object]]]:
    """SIGTERM, as systemctl stop sends it; the exit code and the JSON log events."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    return process.returncode, [json.loads(line) for line in lines]


def test_lintian_finds_no_errors(built: Path) -> None:
    (changes,) = built.glob("*.changes")
    done = subprocess.run(["lintian", "--fail-on", "error", str(changes)], capture_output=True, text=True,
                          timeout=600)
    errors = [line for line in done.stdout.splitlines() if line.startswith("E:")]
    assert done.returncode == 0 and not errors, done.stdout + done.stderr


def test_units_pass_systemd_analyze_verify(debian_root: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", f"--root={debian_root}", *UNITS],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_units_are_hardened_and_stop_gracefully(debian_root: Path) -> None:
    for name in UNITS:
        service = unit(debian_root, name)["Service"]
        assert service["User"] == "pvebalance" and service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict" and service["StateDirectory"] == "pvebalance"
        assert service["PrivateTmp"] == "yes" and "AF_NETLINK" not in service["RestrictAddressFamilies"]
    controller = unit(debian_root, "pvebalance.service")["Service"]
    # SIGTERM waits for running migrations, each bounded by apply.task_timeout (30 min default).
    assert controller["TimeoutStopSec"] == "35min" and controller.get("KillSignal", "SIGTERM") == "SIGTERM"


def test_install_makes_the_user_the_directories_and_private_token_files(debian_root: Path) -> None:
    user = in_root(debian_root, "getent", "passwd", "pvebalance").stdout.split(":")
    assert user[5] == "/var/lib/pvebalance" and user[6].strip() == "/usr/sbin/nologin"
    uid, gid = int(user[2]), int(user[3])
    for program in PROGRAMS:
        assert os.access(debian_root / "usr/bin" / program, os.X_OK), program
    for token in ("monitor.token", "balancer.token"):
        info = (debian_root / "etc/pvebalance" / token).stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, uid, gid), token
    state = (debian_root / "var/lib/pvebalance").stat()
    assert (stat.S_IMODE(state.st_mode), state.st_uid) == (0o750, uid)
    conffiles = in_root(debian_root, "dpkg-query", "--showformat=${Conffiles}", "--show", "pvebalance").stdout
    assert {"/etc/pvebalance/config.yaml", "/etc/pvebalance/exporter.yml",
            "/etc/default/pvebalance-exporter"} <= {line.split()[0] for line in conffiles.splitlines() if line.strip()}
    # the shipped examples are what their programs accept, once a cluster is filled in
    for example in ("config.yaml", "exporter.yml"):
        assert "pve1.example.com" in (debian_root / "etc/pvebalance" / example).read_text(encoding="utf-8")


def _point_at(debian_root: Path, sim_host: str, ca_path: str, token_value: str) -> dict[str, int]:
    """Fill in the shipped configs for the simulator, as docs/install.md tells an admin to."""
    etc = debian_root / "etc/pvebalance"
    shutil.copy(ca_path, etc / "pve-root-ca.pem")
    for token in ("monitor.token", "balancer.token"):
        _write_keeping_mode(etc / token, token_value + "\n")
    exporter = yaml.safe_load((etc / "exporter.yml").read_text(encoding="utf-8"))
    exporter["default"].update(host=sim_host, user="root@pam", token_name="test")
    _write_keeping_mode(etc / "exporter.yml", yaml.safe_dump(exporter))
    ports = {"exporter": free_port(), "controller": free_port()}
    controller = yaml.safe_load((etc / "config.yaml").read_text(encoding="utf-8"))
    controller["proxmox"].update(host=sim_host, user="root@pam", token_name="test")
    controller["run"]["listen"] = f"127.0.0.1:{ports['controller']}"
    _write_keeping_mode(etc / "config.yaml", yaml.safe_dump(controller))
    _write_keeping_mode(debian_root / "etc/default/pvebalance-exporter",
                        f'ARGS="--web.listen-address=127.0.0.1:{ports["exporter"]}"\n')
    return ports


def test_installed_programs_run_as_their_units_against_the_simulator(debian_root: Path) -> None:
    with running_simulator("demo") as sim:
        ports = _point_at(debian_root, sim.host, sim.ca_path, sim.token_value)

        check = subprocess.run([*unit_command(debian_root, "pvebalance.service")[:-1], "check"],
                               capture_output=True, text=True, timeout=300)
        assert check.returncode == 0 and "all checks passed" in check.stdout, check.stdout + check.stderr

        exporter = subprocess.Popen(unit_command(debian_root, "pvebalance-exporter.service"),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_http(f"http://127.0.0.1:{ports['exporter']}/health", exporter)
            metrics = requests.get(f"http://127.0.0.1:{ports['exporter']}/metrics", timeout=60)
            assert metrics.status_code == 200 and 'pve_up{id="node/pve1"} 1.0' in metrics.text
        finally:
            code, events = _stop(exporter)
        assert code == 0 and [e["event"] for e in events][-1] == "exporter_stopped"

        controller = subprocess.Popen(unit_command(debian_root, "pvebalance.service"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 300
            while _wait_http(f"http://127.0.0.1:{ports['controller']}/health", controller).status_code != 200:
                assert time.monotonic() < deadline, "the controller's first cycle never succeeded"
                time.sleep(0.5)
        finally:
            code, events = _stop(controller)
        assert code == 0, events
        assert "cycle.start" in [e["event"] for e in events] and events[-1]["event"] == "loop.stopped"


def test_upgrade_keeps_configs_and_state_remove_keeps_them_purge_deletes_them(debian_root: Path, deb: Path) -> None:
    etc, state = debian_root / "etc/pvebalance", debian_root / "var/lib/pvebalance"
    config = etc / "config.yaml"
    _write_keeping_mode(config, config.read_text(encoding="utf-8") + "# edited by the admin\n")
    _write_keeping_mode(etc / "balancer.token", "the-secret\n")
    (state / "state.json").write_text("{}\n")
    kept = {path: path.read_bytes() for path in (config, etc / "balancer.token", state / "state.json")}
    token_mode = (etc / "balancer.token").stat().st_mode

    upgraded = in_root(debian_root, "dpkg", "--install", f"/tmp/{deb.name}")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert {path: path.read_bytes() for path in kept} == kept
    assert (etc / "balancer.token").stat().st_mode == token_mode

    removed = in_root(debian_root, "dpkg", "--remove", "pvebalance")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (debian_root / "usr/bin/pvebalance").exists()
    assert not (debian_root / "usr/lib/pvebalance").exists(), "compiled bytecode left behind"
    assert {path: path.read_bytes() for path in kept} == kept

    purged = in_root(debian_root, "dpkg", "--purge", "pvebalance")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not etc.exists() and not state.exists()
    assert not (debian_root / "etc/default/pvebalance-exporter").exists()
    assert in_root(debian_root, "dpkg-query", "--show", "pvebalance").returncode != 0
