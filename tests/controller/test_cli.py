"""`pvebalance plan`, `check` and `apply` as a user runs them, against the simulator."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import responses

from controller.cli import main
from exporter.backfill import backfill
from testkit.processes import free_port
from testkit.prometheus import running_prometheus
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator, running_simulator

MONITOR_TOKEN = "00000000-0000-4000-8000-0000000e4907"  # the demo's read-only monitor@pve!exporter


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # drop what the in-process simulator printed before
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_has_the_documented_schema_and_changes_nothing(
    frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, frozen_sim)
    before = frozen_sim.placement()
    frozen_sim.reset_request_counts()
    code, out, err = _run(capsys, "--config", str(config), "plan", "--output", "json", "--save", str(tmp_path / "p.json"))
    # stderr has at most progress lines (a slow plan on a pipe); stdout is the JSON alone
    assert code == 0 and all(line.startswith("plan: ") for line in err.splitlines()), err
    plan = json.loads(out)
    assert plan["moves"] and {"vmid", "name", "type", "source", "target", "reason"} <= set(plan["moves"][0])
    assert plan["sources"] == {"live": 60} and plan["window"] == "live"
    assert plan["imbalance"]["after"] < plan["imbalance"]["before"]
    assert json.loads((tmp_path / "p.json").read_text())["moves"] == plan["moves"]
    assert frozen_sim.placement() == before
    counts = frozen_sim.request_counts()
    assert not any(k.startswith("POST") for k in counts)
    # A fixed number of calls per plan (observation, cooldowns and the cluster the state file must
    # belong to), plus one precondition check per planned move.
    # Compatibility: one config per guest some round of planning moved, node status once per node
    # (the demo's db01 has cpu: host), never one per guest of the cluster.
    per_plan = ("/migrate", "/config", "/nodes/{node}/status")
    fixed = {k: v for k, v in counts.items() if not k.endswith(per_plan)}
    assert fixed == {"GET /cluster/resources": 1, "GET /cluster/ha/status/current": 1, "GET /cluster/ha/rules": 1,
                     "GET /cluster/options": 1, "GET /cluster/tasks": 1, "GET /cluster/status": 1}
    assert not (tmp_path / "state.json").exists() and not (tmp_path / "state.json.lock").exists()
    assert counts["GET /nodes/{node}/qemu/{vmid}/migrate"] <= 2 * len(plan["moves"])
    configs = counts.get("GET /nodes/{node}/qemu/{vmid}/config", 0) + counts.get("GET /nodes/{node}/lxc/{vmid}/config", 0)
    assert 0 < configs <= 3 * len(plan["moves"]) and counts.get("GET /nodes/{node}/status", 0) <= 5


def test_plan_table_says_where_figures_came_from(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim)
    code, out, _ = _run(capsys, "--config", str(config), "plan")
    assert code == 0 and "figures from live: 60 guests" in out and "Moves (" in out
    assert "local disks" not in out or "130" in out  # build01 (local disks) is never planned to move


def test_plan_uses_prometheus_history(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 4: history backfilled from the simulator through the exporter, then planned from."""
    # The backfill's admin-clock session sets `verify` on the session, which requests lets
    # REQUESTS_CA_BUNDLE override; without it the simulator's own certificate is used.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with running_simulator("demo", time_scale=0) as sim:
        now = sim.clock()
        backfill(sim.connection_settings(), sim.admin_url, now - 3600, now - 60, 60, tmp_path / "tsdb")
        sim.set_time(now)
        with running_prometheus(tmp_path / "tsdb") as prom:
            config = write_config(tmp_path, sim, prometheus={"url": prom.url, "window": "1h", "max_data_age": "10m"})
            code, out, err = _run(capsys, "--config", str(config), "plan", "--output", "json")
            assert code == 0, err
            plan = json.loads(out)
            running = sum(1 for g in sim.state()["guests"] if g["status"] == "running")
            assert plan["window"] == "1h" and plan["sources"]["prometheus"] == running
            assert plan["moves"] and plan["imbalance"]["after"] < plan["imbalance"]["before"]
            code, out, err = _run(capsys, "--config", str(config), "plan", "--window", "6h")
            assert code == 0 and "window 6h" in out
            code, out, err = _run(capsys, "--config", str(config), "check")
            assert code == 0 and f"history for {running}/{running} running guests" in out


def test_the_next_plan_starts_where_the_applied_one_said_it_would_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after a plan is applied, the 1h node averages still hold the guests that left.

    Planning on them would see the relieved nodes as loaded and move guests again (ping-pong);
    node demand must follow the guests' current placement instead.
    """
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with running_simulator("demo", time_scale=600) as sim:
        now = sim.clock()
        backfill(sim.connection_settings(), sim.admin_url, now - 3600, now, 60, tmp_path / "tsdb")
        with running_prometheus(tmp_path / "tsdb") as prom:
            config = write_config(tmp_path, sim, prometheus={"url": prom.url, "window": "1h", "max_data_age": "10m"})
            saved = tmp_path / "plan.json"
            assert _run(capsys, "--config", str(config), "plan", "--save", str(saved))[0] == 0
            first = json.loads(saved.read_text())
            code, out, err = _run(capsys, "--config", str(config), "apply", "--plan", str(saved))
            assert code == 0 and f"{len(first['moves'])} succeeded, 0 failed, 0 dropped" in out, out + err
            code, out, err = _run(capsys, "--config", str(config), "plan", "--output", "json")
            assert code == 0, err
            second = json.loads(out)
    assert first["moves"] and second["sources"].get("prometheus")
    assert second["imbalance"]["before"] == pytest.approx(first["imbalance"]["after"], abs=0.02)


def test_prometheus_down_falls_back_to_live_figures_and_says_so(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim, prometheus={"url": f"http://127.0.0.1:{free_port()}"})
    code, out, _ = _run(capsys, "--config", str(config), "plan")
    assert code == 0 and "figures from live: 60 guests" in out
    assert "warning: Prometheus http://127.0.0.1:" in out and "unreachable" in out


def test_check_passes_with_a_full_token(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim)
    code, out, _ = _run(capsys, "--config", str(config), "check")
    assert code == 0 and "all checks passed: Proxmox VE 9.0.10; 5/5 nodes online, 60 guests" in out


def test_check_names_each_problem_on_its_own_line(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, frozen_sim, proxmox={"user": "monitor@pve", "token_name": "exporter"}, token_value=MONITOR_TOKEN,
        run={"automation": "automatic"}, rules={"maintenance": ["pve9"]},
        prometheus={"url": f"http://127.0.0.1:{free_port()}"},
    )
    code, out, _ = _run(capsys, "--config", str(config), "check")
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert code == 1 and len(problems) == 4, out
    assert "lacks VM.Migrate on /vms" in problems[0]
    assert "lacks Pool.Allocate on /pool/pvebalance-lease: apply and automatic run cannot take the controller lease" in problems[1]
    assert "rules: maintenance names unknown node(s) pve9: ignored" in problems[2]  # as plan reports it
    assert "Prometheus http://127.0.0.1" in problems[3] and "unreachable" in problems[3]
    assert MONITOR_TOKEN not in out


def test_a_read_only_token_can_plan(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim, proxmox={"user": "monitor@pve", "token_name": "exporter"},
                          token_value=MONITOR_TOKEN)
    # PVE's precondition check needs VM.Migrate (the simulator lets VM.Audit through; answer as PVE does).
    frozen_sim.inject_fault({"type": "error", "endpoint": "GET /nodes/{node}/*/{vmid}/migrate", "status": 403,
                             "message": "Permission check failed (/vms/100, VM.Migrate)"})
    code, out, _ = _run(capsys, "--config", str(config), "plan", "--output", "json")
    plan = json.loads(out)
    assert code == 0 and plan["moves"]
    assert any("may not run migrate precondition checks (VM.Migrate)" in w for w in plan["warnings"])


def test_check_with_prometheus_without_pve_series(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_prometheus(tmp_path / "empty") as prom:
        config = write_config(tmp_path, frozen_sim, prometheus={"url": prom.url})
        code, out, _ = _run(capsys, "--config", str(config), "check")
    assert code == 1 and "has no current pve_cpu_usage_ratio series: is pvebalance-exporter" in out


def test_a_wrong_token_is_one_line_and_exit_2(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim, token_value="11111111-2222-3333-4444-555555555555")
    for command in ("plan", "apply", "run"):
        code, out, err = _run(capsys, "--config", str(config), command, *(["--once"] if command == "run" else []))
        lines = err.strip().splitlines()
        assert code in (1, 2) and "Traceback" not in err + out
        if code == 2:
            assert len(lines) == 1 and "HTTP 401" in lines[0] and "check the user, token name and token secret" in lines[0]
        assert "11111111" not in err + out


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("proxmox: {host: h, user: u@pve, token_name: t, token_value: x}\nrun: {automation: yes}\n")
    code, out, err = _run(capsys, "--config", str(path), "plan")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("pvebalance: ") and "run.automation: must be manual (plan only) or automatic" in err


def test_apply_a_saved_plan_and_refuse_a_stale_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_simulator("demo", time_scale=600) as sim:
        config = write_config(tmp_path, sim, policy={"max_moves": 2})
        saved = tmp_path / "plan.json"
        assert _run(capsys, "--config", str(config), "plan", "--save", str(saved))[0] == 0
        moves = json.loads(saved.read_text())["moves"]
        code, out, err = _run(capsys, "--config", str(config), "apply", "--plan", str(saved))
        assert code == 0, out + err
        assert f"{len(moves)} succeeded, 0 failed, 0 dropped, 0 not started" in out
        assert all(sim.placement()[m["vmid"]] == m["target"] for m in moves)
        # The same plan again: its guests are no longer where it says; each move is dropped, saying why.
        code, out, err = _run(capsys, "--config", str(config), "apply", "--plan", str(saved))
        assert code == 1 and f"0 succeeded, 0 failed, {len(moves)} dropped" in out, out + err
        for m in moves:
            assert f"{m['vmid']} {m['name']} {m['source']} -> {m['target']}: dropped - the guest is on {m['target']} now" in out
        saved.write_text('{"moves": []}')
        code, out, err = _run(capsys, "--config", str(config), "apply", "--plan", str(saved))
        assert code == 2 and "not a usable saved plan" in err and err.count("\n") == 1


def test_ha_auto_rebalance_leaves_ha_guests_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = _demo_with(options={"crs": "ha=dynamic,ha-auto-rebalance=1"}, rules={})
    with running_simulator(scenario, time_scale=0) as sim:
        config = write_config(tmp_path, sim, rules={"node_affinity": [{"name": "x", "vmids": [122], "nodes": ["pve5"]}]})
        code, out, _ = _run(capsys, "--config", str(config), "plan", "--output", "json")
    plan = json.loads(out)
    assert code == 0 and not [m for m in plan["moves"] if m["vmid"] in (120, 121, 122)]
    assert any("HA auto-rebalance is on" in w for w in plan["warnings"])
    assert {s["vmid"]: s["reason"] for s in plan["skipped"]}[122] == "HA auto-rebalance manages it"


def _demo_with(options: dict[str, Any], rules: dict[str, Any]) -> dict[str, Any]:
    import yaml

    from simulator import scenario as scenarios

    data: dict[str, Any] = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    data["options"] = options
    return data


def test_apply_refuses_stale_prometheus_data(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_prometheus(tmp_path / "empty") as prom:
        config = write_config(tmp_path, frozen_sim, prometheus={"url": prom.url})
        code, out, _ = _run(capsys, "--config", str(config), "apply")
    assert code == 1 and out.startswith("not applying: ") and "no recent pve_* samples" in out
    assert "set run.fallback_to_live: true" in out
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]
    assert time.time()  # the cluster was observed, nothing was migrated


@responses.activate
def test_apply_refuses_prometheus_samples_dated_in_the_future(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Prometheus-compatible server whose clock is a year ahead: its data is not fresh."""
    responses.add_passthru(frozen_sim.url.rsplit("/api2", 1)[0])  # the simulator itself is real
    future = time.time() + 365 * 86400
    result = [{"metric": {"id": f"qemu/{vmid}"}, "value": [future, str(future)]} for vmid in frozen_sim.placement()]
    responses.get("http://prom.example:9090/api/v1/query",
                  json={"status": "success", "data": {"resultType": "vector", "result": result}})
    config = write_config(tmp_path, frozen_sim, prometheus={"url": "http://prom.example:9090"})
    code, out, _ = _run(capsys, "--config", str(config), "apply")
    assert code == 1 and out.startswith("not applying: ") and "dated in the future" in out and "check the clocks" in out
    assert not [t for t in frozen_sim.tasks() if t["type"].endswith("migrate")]
