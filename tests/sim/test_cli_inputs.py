"""`pvebalance-sim` as a user runs it: every bound on its input, secrets from files and the
environment (never on its command line), and a capture rehearsed as the README says."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from testkit.processes import free_port
from tests.support.sim import running_simulator

ROOT = Path(__file__).resolve().parents[2]
SIM = str(Path(sys.executable).parent / "pvebalance-sim")  # the installed console script
NODE = "nodes: [{name: pve1, cores: 8, memory: 32GiB}]\n"


def _refused(*args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Runs the simulator expecting it to refuse: exit 2, one line, no traceback; that line."""
    result = subprocess.run([SIM, *args, "--port", "0"], cwd=cwd, capture_output=True, text=True, timeout=120,
                            env={**os.environ, **(env or {})}, check=False)
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (2, 1) and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(("name", "text", "message"), [
    ("memory-inf.yaml", "nodes: [{name: pve1, cores: 8, memory: .inf}]\n", "node pve1.memory: expected a size"),
    ("cores-huge.yaml", "nodes: [{name: pve1, cores: 1.0e+12, memory: 32GiB}]\n", "node pve1.cores: expected a whole number"),
    ("cores-e.yaml", "nodes: [{name: pve1, cores: 1e12, memory: 32GiB}]\n", "node pve1.cores: expected a whole number"),
    ("mem-5.yaml", NODE + "guests: [{vmid: 100, node: pve1, mem: 5}]\n", "guest 100.mem (a load from 0 to 1): expected a number from 0 to 1, got 5"),
    ("time-scale-inf.yaml", "time_scale: .inf\n" + NODE, "time_scale: expected a number from 0 to 1e+06, got inf"),
    ("start-1e20.yaml", "start: 1.0e+20\n" + NODE, "start: expected an epoch or an ISO time"),
    ("bandwidth-0.yaml", "migration: {bandwidth: 0}\n" + NODE, "migration.bandwidth: expected at least 1KiB per second"),
    ("generate-1e9.yaml", "generate: {guests: {count: 1000000000}}\n" + NODE,
     "generate.guests.count: expected a whole number from 0 to 100000, got 1000000000"),
    ("nested.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("nested.yaml", "nodes: " + "[" * 5_000 + "]" * 5_000 + "\n", "nodes[0]: expected a mapping, got list"),
])
def test_an_out_of_bounds_scenario_is_one_line_and_exit_2(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    line = _refused("--scenario", str(tmp_path / name))
    assert line.startswith(f"pvebalance-sim: scenario {name}") and message in line, line


@pytest.mark.parametrize(("fault", "message"), [
    ("{type: latency, endpoint: '*', seconds: -1}", "fault 1.seconds: expected a number from 0 to 3.16224e+08, got -1"),
    ("{type: latency, endpoint: '*', seconds: .inf}", "fault 1.seconds: expected a number from 0 to 3.16224e+08, got inf"),
    ("{type: hang, endpoint: '*', seconds: .nan}", "fault 1.seconds: expected a number from 0 to 3.16224e+08, got nan"),
])
def test_an_out_of_bounds_fault_is_one_line_and_exit_2(tmp_path: Path, fault: str, message: str) -> None:
    (tmp_path / "faults.yaml").write_text(f"- {fault}\n")
    assert _refused("--faults", str(tmp_path / "faults.yaml")) == f"pvebalance-sim: {message}"


@pytest.mark.parametrize(("args", "message"), [
    (["--time-scale", "nan"], "--time-scale: expected a number from 0 to 1e+06, got nan"),
    (["--time-scale", "inf"], "--time-scale: expected a number from 0 to 1e+06, got inf"),
    (["--start", "1e20"], "--start: expected an epoch or an ISO time"),
    (["--auth-failure-delay", "-1"], "--auth-failure-delay: expected a number from 0 to 60, got -1.0"),
    (["--pve-version", "nine"], "--pve-version: expected a version like 9.0.10, got 'nine'"),
    (["--token-file", "/nonexistent/tokens"], "--token-file /nonexistent/tokens: cannot read it"),
])
def test_an_out_of_bounds_option_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    line = _refused(*args)
    assert line.startswith(f"pvebalance-sim: {message}"), line


@pytest.mark.parametrize(("body", "message"), [
    ('{"set": 1e30}', "clock: set: "), ('{"set": -1}', "clock: set: "), ('{"advance": Infinity}', "clock: advance: "),
    ('{"advance": NaN}', "clock: advance: "), ('{"time_scale": 1e12}', "clock: time_scale: "),
])
def test_the_admin_clock_refuses_what_no_clock_can_be(body: str, message: str) -> None:
    with running_simulator("demo", time_scale=0) as sim:
        before = sim.clock()
        answer = requests.post(f"{sim.admin_url}/clock", data=body, verify=sim.ca_path, timeout=10,
                               headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"].startswith(message), answer.text
        assert sim.clock() == before


def test_an_admin_fault_with_a_negative_latency_is_refused() -> None:
    with running_simulator("demo", time_scale=0) as sim:
        answer = requests.post(f"{sim.admin_url}/faults", json={"type": "latency", "endpoint": "*", "seconds": -5},
                               verify=sim.ca_path, timeout=10)
        assert answer.status_code == 400 and "seconds: expected a number from 0 to 3.16224e+08, got -5" in answer.json()["error"]
        assert sim.state()["nodes"]  # still answering, nothing slowed


@contextmanager
def _serving(args: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> Iterator[tuple[dict[str, Any], int]]:
    """A `pvebalance-sim` process; yields its start event and pid, stops it with SIGTERM."""
    process = subprocess.Popen(args, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env={**os.environ, **(env or {})})
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        started = json.loads(line) if line.startswith("{") else {"event": line}
        assert started["event"] == "sim_started", line + process.stderr.read()[-2000:]
        yield started, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def _get(started: Mapping[str, Any], path: str, token: str) -> requests.Response:
    return requests.get(f"{started['url']}{path}", headers={"Authorization": f"PVEAPIToken={token}"},
                        verify=started["cert"], timeout=10)


def test_secrets_come_from_files_and_the_environment_and_stay_off_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("# CI tokens\nci@pve!file=from-a-file-1\n")
    (tmp_path / "users").write_text("ops@pve=pass-from-a-file\n")
    (tmp_path / "admin").write_text("admin-from-a-file\n")
    env = {"PVEBALANCE_SIM_TOKENS": "ci@pve!env=from-the-env-2", "PVEBALANCE_SIM_USERS": "env@pve=pass-from-the-env"}
    args = [SIM, "--scenario", "demo", "--port", "0", "--time-scale", "0", "--token-file", str(tmp_path / "tokens"),
            "--user-file", str(tmp_path / "users"), "--admin-token-file", str(tmp_path / "admin")]
    secrets = ["from-a-file-1", "from-the-env-2", "pass-from-a-file", "pass-from-the-env", "admin-from-a-file"]
    with _serving(args, env) as (started, pid):
        assert _get(started, "/version", "ci@pve!file=from-a-file-1").status_code == 200
        assert _get(started, "/version", "ci@pve!env=from-the-env-2").status_code == 200
        assert _get(started, "/version", "ci@pve!env=wrong").status_code == 401
        for user, password in (("ops@pve", "pass-from-a-file"), ("env@pve", "pass-from-the-env")):
            login = requests.post(f"{started['url']}/access/ticket", data={"username": user, "password": password},
                                  verify=started["cert"], timeout=10)
            assert login.status_code == 200, user
        admin = started["url"].replace("/api2/json", "/_sim")
        assert requests.get(f"{admin}/state", verify=started["cert"], timeout=10).status_code == 401
        assert requests.get(f"{admin}/state", verify=started["cert"], timeout=10,
                            headers={"Authorization": "Bearer admin-from-a-file"}).status_code == 200
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        assert "ci@pve!file" in json.dumps(started["tokens"]) and "ci@pve!env" in json.dumps(started["tokens"])
        assert [s for s in secrets if s in command_line or s in json.dumps(started)] == []


def test_a_capture_is_rehearsed_as_the_readme_says(tmp_path: Path) -> None:
    """README step 4, as written: the capture (pvesh's bare list, here taken from the demo) served
    by the command the README gives, then the controller pointed at it with the token it printed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    step = re.search(r"\*\*Rehearse first\.\*\*(.*?)\n\n", readme, re.S)
    assert step, "README lost its 'Rehearse first' step"
    commands = re.findall(r"`([^`]+)`", step.group(1))
    capture_cmd = next(c for c in commands if c.startswith("pvesh "))
    sim_cmd = next(c for c in commands if "pvebalance-sim" in c)
    assert capture_cmd == "pvesh get /cluster/resources --output-format json > capture.json"
    with running_simulator("demo", time_scale=0) as demo:  # what pvesh prints on the demo: the bare list
        listed = requests.get(f"{demo.url}/cluster/resources", verify=demo.ca_path, timeout=10,
                              headers={"Authorization": f"PVEAPIToken={demo.token_id}={demo.token_value}"}).json()["data"]
    (tmp_path / "capture.json").write_text(json.dumps(listed))
    # As written, run from the checkout (the command names .venv/bin/) in the capture's folder;
    # only the port is ours: 8006 may be taken on a shared machine.
    args = [str(ROOT / a) if a.startswith(".venv/") else a for a in shlex.split(sim_cmd)] + ["--port", "0"]
    with _serving(args, cwd=tmp_path) as (started, pid):
        token_file = Path(started["token_file"])
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and "root@pam!rehearse" in started["tokens"]
        assert started["time_scale"] == 60  # constant loads: migrations finish 60x sooner
        secret = token_file.read_text().strip()
        assert secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode() and secret not in json.dumps(started)
        assert _get(started, "/version", f"root@pam!rehearse={secret}").json()["data"]["version"] == "9.0.10"
        config = tmp_path / "pvebalance.yml"
        config.write_text(yaml.safe_dump({
            "proxmox": {"host": started["url"].split("/")[2], "user": "root@pam", "token_name": "rehearse",
                        "token_value_file": str(token_file), "verify_ssl": started["cert"]},
            "policy": {"max_moves": 1}, "apply": {"poll_interval": 0.2},
            "run": {"state_file": str(tmp_path / "state.json")}}))  # not the machine's shared default
        for command in ("check", "plan", "apply"):
            result = subprocess.run([str(Path(sys.executable).parent / "pvebalance"), "--config", str(config), command],
                                    capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
            assert result.returncode == 0, (command, result.stdout + result.stderr[-2000:])
        # max_moves caps balancing only: the demo's mandatory repair may come on top of its one move
        done = re.search(r"^(\d+) succeeded, 0 failed", result.stdout, re.MULTILINE)
        assert done is not None and int(done.group(1)) >= 1, result.stdout


def test_a_captures_version_can_be_given(tmp_path: Path) -> None:
    listed = [{"id": "node/a", "type": "node", "node": "a", "status": "online", "cpu": 0.1, "maxcpu": 4,
               "mem": 1024**3, "maxmem": 8 * 1024**3, "maxdisk": 10 * 1024**3, "uptime": 5, "level": ""}]
    (tmp_path / "capture.json").write_text(json.dumps(listed))
    args = [SIM, "--scenario", str(tmp_path / "capture.json"), "--port", "0"]
    with _serving(args) as (started, _):  # no memhost anywhere: a PVE 8 cluster
        token = f"root@pam!rehearse={Path(started['token_file']).read_text().strip()}"
        assert _get(started, "/version", token).json()["data"]["version"] == "8.4.14"
    with _serving([*args, "--pve-version", "9.1.2"]) as (started, _):
        token = f"root@pam!rehearse={Path(started['token_file']).read_text().strip()}"
        assert _get(started, "/version", token).json()["data"]["version"] == "9.1.2"
        assert "available" in _get(started, "/nodes/a/status", token).json()["data"]["memory"]  # PVE 9


def test_pveum_subcommand_sets_up_a_token_on_a_running_simulator(tmp_path: Path) -> None:
    (tmp_path / "admin").write_text("admin-secret\n")
    args = [SIM, "--scenario", "demo", "--port", "0", "--time-scale", "0", "--admin-token-file", str(tmp_path / "admin")]
    with _serving(args) as (started, _):
        base = started["url"].removesuffix("/api2/json")

        def pveum(*words: str, admin: bool = True) -> subprocess.CompletedProcess[str]:
            login = ["--admin-token-file", str(tmp_path / "admin")] if admin else []
            return subprocess.run([SIM, "pveum", "--url", base, "--ca", started["cert"], *login, *words],
                                  capture_output=True, text=True, timeout=60, check=False)

        assert pveum("user", "add", "ops@pve").returncode == 0
        token = pveum("user", "token", "add", "ops@pve", "tk", "--privsep", "1")
        assert token.returncode == 0, token.stderr
        secret = json.loads(token.stdout)["value"]
        for words in (["acl", "modify", "/", "--users", "ops@pve", "--roles", "PVEAuditor"],
                      ["acl", "modify", "/", "--tokens", "ops@pve!tk", "--roles", "PVEAuditor"]):
            assert pveum(*words).returncode == 0
        permissions = _get(started, "/access/permissions", f"ops@pve!tk={secret}").json()["data"]
        assert permissions["/"]["Sys.Audit"] == 1 and "VM.Migrate" not in permissions["/"]
        refused = pveum("user", "add", "x@pve", admin=False)
        assert refused.returncode == 2 and refused.stderr.strip() == (
            "pvebalance-sim pveum: admin API: send 'Authorization: Bearer <admin token>'")
        unknown = pveum("frobnicate")
        assert unknown.returncode == 2 and "unsupported command 'frobnicate'" in unknown.stderr
        wrong_ca = subprocess.run([SIM, "pveum", "--url", base, "--ca", str(tmp_path / "no-such.pem"), "user", "add", "y@pve"],
                                  capture_output=True, text=True, timeout=60, check=False)
        assert wrong_ca.returncode == 2 and "Traceback" not in wrong_ca.stderr
        assert wrong_ca.stderr.strip().splitlines() == [
            f"pvebalance-sim pveum: --ca {tmp_path / 'no-such.pem'}: no such file; pass the `cert` path of the simulator's start event"]
    closed = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = subprocess.run([SIM, "pveum", "--url", closed, "user", "add", "y@pve"],
                                 capture_output=True, text=True, timeout=60, check=False)
    assert unreachable.returncode == 2 and unreachable.stderr.strip().splitlines() == [
        f"pvebalance-sim pveum: {closed}/_sim/pveum: no simulator answered (ConnectionError) - check --url "
        "(the `url` of the simulator's start event, without /api2/json) and --ca"]
