"""The documented `pveum` token setup, replayed against the simulator, then check, plan and apply with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from controller.cli import main
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

ROOT = Path(__file__).resolve().parents[2]


def _pveum_lines(doc: str) -> list[str]:
    text = (ROOT / "docs" / doc).read_text(encoding="utf-8")
    block = re.search(r"```sh\n(pveum user add.*?)```", text, re.S)
    assert block, f"no pveum block in docs/{doc}"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines()
            if line.strip().startswith("pveum")]


def _replay(sim: RunningSimulator, lines: list[str]) -> dict[str, str]:
    secrets = {}
    for line in lines:
        answer = requests.post(f"{sim.admin_url}/pveum", json={"command": line}, verify=sim.ca_path, timeout=10)
        assert answer.status_code == 200, (line, answer.text)
        data = answer.json()["data"]
        if data and "value" in data:
            secrets[data["full-tokenid"]] = data["value"]
    return secrets


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("doc", ["proxmox-permissions.md", "controller.md"])
def test_documented_token_can_check_plan_and_apply(doc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_simulator("demo", time_scale=600) as sim:
        secret = _replay(sim, _pveum_lines(doc))["pvebalance@pve!balancer"]
        config = write_config(tmp_path, sim, token_value=secret, policy={"max_moves": 1},
                              proxmox={"user": "pvebalance@pve", "token_name": "balancer"})
        code, out, err = _cli(capsys, "--config", str(config), "check")
        assert code == 0 and "all checks passed" in out, out + err
        saved = tmp_path / "plan.json"
        assert _cli(capsys, "--config", str(config), "plan", "--save", str(saved))[0] == 0
        code, out, err = _cli(capsys, "--config", str(config), "apply", "--plan", str(saved))
        assert code == 0 and " succeeded, 0 failed" in out, out + err


def test_without_vm_migrate_on_the_user_apply_is_refused_as_pve_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [line.replace("PVEAuditor,PVEBalancer", "PVEAuditor") if "--users" in line else line
             for line in _pveum_lines("proxmox-permissions.md")]
    with running_simulator("demo", time_scale=600) as sim:
        secret = _replay(sim, lines)["pvebalance@pve!balancer"]
        config = write_config(tmp_path, sim, token_value=secret, policy={"max_moves": 1},
                              proxmox={"user": "pvebalance@pve", "token_name": "balancer"})
        code, out, _ = _cli(capsys, "--config", str(config), "check")
        assert "lacks VM.Migrate on /vms" in out
        before = sim.placement()
        code, out, err = _cli(capsys, "--config", str(config), "apply")
        assert "Permission check failed (/vms/" in out + err and ", VM.Migrate)" in out + err, out + err
        assert sim.placement() == before


def test_a_privsep_token_without_user_acls_has_nothing(tmp_path: Path) -> None:
    with running_simulator("demo", time_scale=0) as sim:
        secret = _replay(sim, ["pveum user add nobody@pve", "pveum user token add nobody@pve tk --privsep 1",
                               "pveum aclmod / -token 'nobody@pve!tk' -role PVEAuditor"])["nobody@pve!tk"]
        answer = requests.get(f"{sim.url}/access/permissions", verify=sim.ca_path, timeout=10,
                              headers={"Authorization": f"PVEAPIToken=nobody@pve!tk={secret}"})
        assert answer.json()["data"] == {}
        answer = requests.get(f"{sim.url}/nodes/pve1/status", verify=sim.ca_path, timeout=10,
                              headers={"Authorization": f"PVEAPIToken=nobody@pve!tk={secret}"})
        assert answer.status_code == 403 and answer.reason == "Permission check failed (/nodes/pve1, Sys.Audit)"
