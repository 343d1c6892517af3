"""Mistakes a user makes in tags, rules, saved plans and the connection block, through
`pvebalance` against the simulator: each is held safe and said in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controller.cli import main
from pveapi.client import PveClient
from pveapi.errors import ApiError
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

DEMO = Path(__file__).resolve().parents[2] / "simulator" / "scenarios" / "demo.yaml"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_pin_to_an_unknown_node_holds_the_guest_where_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = yaml.safe_load(DEMO.read_text())
    pinned = [g["vmid"] for g in scenario["guests"] if g["node"] == "pve1"]  # the busiest node
    for guest in scenario["guests"]:
        if guest["vmid"] in pinned:
            guest["tags"] = [*guest.get("tags", []), "plb_pin_pve9"]
    with running_simulator(scenario, time_scale=0) as sim:
        config = write_config(tmp_path, sim)
        code, out, _ = _run(capsys, "--config", str(config), "plan", "--output", "json")
    plan = json.loads(out)
    assert code == 0 and not [m for m in plan["moves"] if m["vmid"] in pinned]
    skipped = {s["vmid"]: s["reason"] for s in plan["skipped"]}
    assert all("names no node of this cluster: held where it is" in skipped[v] for v in pinned)
    assert any("pin 101" in p and "(pve9)" in p and "stay where they are until it is fixed" in p for p in plan["problems"])


def test_a_rule_naming_a_missing_guest_is_reported_by_check_and_plan(
    frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, frozen_sim, rules={"anti_affinity": [{"name": "dns", "vmids": [100, 99999]}]})
    code, out, _ = _run(capsys, "--config", str(config), "check")
    line = "anti-affinity 'dns' (config c.yaml: rules) names guest(s) 99999, not in the cluster: check the rule"
    assert code == 1 and f"problem: rules: {line.replace('c.yaml', str(config))}" in out.splitlines()
    code, out, _ = _run(capsys, "--config", str(config), "plan")
    assert code == 0 and f"  - {line.replace('c.yaml', str(config))}" in out.splitlines()


def test_a_saved_plan_with_an_infinite_figure_is_refused(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, saved = write_config(tmp_path, frozen_sim), tmp_path / "plan.json"
    assert _run(capsys, "--config", str(config), "plan", "--save", str(saved))[0] == 0
    document = json.loads(saved.read_text())
    document["moves"][0]["cpu_cores"] = float("inf")
    saved.write_text(json.dumps(document))  # JSON with `Infinity`, as a hand-edited file may have
    assert "Infinity" in saved.read_text()
    code, out, err = _run(capsys, "--config", str(config), "apply", "--plan", str(saved))
    lines = [line for line in err.splitlines() if line.startswith("pvebalance: ")]
    assert code == 2 and "Traceback" not in err and len(lines) == 1
    assert "plan.moves[0].cpu_cores: expected a number from 0 to 1e+15, got inf" in lines[0]
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]


def test_the_host_pasted_from_the_browser_works(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim, proxmox={"host": f"https://{frozen_sim.host}/"})
    code, out, err = _run(capsys, "--config", str(config), "plan")
    # stderr carries only progress lines (a slow plan reports itself), never an error
    assert code == 0 and "Moves (" in out and all(line.startswith("plan: ") for line in err.splitlines())


def test_a_tls_failure_says_what_to_do_and_nothing_unrelated(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    config = write_config(tmp_path, frozen_sim, proxmox={"verify_ssl": True})
    code, out, err = _run(capsys, "--config", str(config), "plan")
    lines = [line for line in err.splitlines() if line.startswith("pvebalance: ")]  # a warning event comes first
    assert code == 2 and out == "" and len(lines) == 1 and "Traceback" not in err
    assert lines[0].endswith("TLS certificate verification failed - install the cluster's CA or set verify_ssl: false")
    assert "check the host, port" not in err


def test_a_ca_file_removed_while_running_is_an_api_error_not_a_crash(frozen_sim: RunningSimulator, tmp_path: Path) -> None:
    """The lease renewer and the loop catch ApiError: a bare OSError from requests killed the thread."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(frozen_sim.ca_path).read_bytes())
    client = PveClient(frozen_sim.connection_settings(verify_ssl=str(ca)))
    assert client.get("/version")["version"]
    ca.unlink()
    with pytest.raises(ApiError) as raised:
        client.get("/version")
    assert "the CA bundle cannot be read" in str(raised.value)
    assert str(raised.value).endswith("- check the file verify_ssl names exists and is readable")
