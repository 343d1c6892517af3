"""The operator API over real HTTP against a running `pvebalance run` on the simulator: both
roles, no token and a wrong one, CORS, a plan applied by id, a stale plan refused, a person's
migration that breaks a rule or overcommits refused, pause surviving a restart, no secret out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controller.config import load_config
from testkit.processes import free_port
from tests.controller.conftest import write_config
from tests.controller.test_advisor import API_KEY, GOOD
from tests.controller.test_run_process import ROOT, _events, _wait
from tests.support.llm import reply_with, running_llm
from tests.support.sim import RunningSimulator, running_simulator

OPERATOR = "op-3f1c9a7e-token-for-tests"
VIEWER = "view-8d2b4e10-token-for-tests"
GRAFANA = "http://grafana.example:3000"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with running_simulator("demo", time_scale=600) as running:
        yield running


class Run:
    """A `pvebalance run` process with the API switched on."""

    def __init__(self, tmp_path: Path, sim: RunningSimulator, rules: dict[str, Any] | None = None,
                 ai: dict[str, Any] | None = None) -> None:
        (tmp_path / "operator.token").write_text(OPERATOR + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        optional: dict[str, Any] = {**({"rules": rules} if rules else {}), **({"ai": ai} if ai else {})}
        self.config = write_config(
            tmp_path, sim,
            run={"interval": "1h", "hold_time": 0, "listen": f"127.0.0.1:{self.port}"},
            api={"tokens": [{"name": "grafana", "role": "operator", "token_file": "operator.token"},
                            {"name": "wallboard", "role": "viewer", "token_env": "TEST_VIEWER_TOKEN"}],
                 "cors_origins": [GRAFANA]},
            # These tests are about the API; the greedy plan (search off) stands for the planner's
            # and spares each plan the local search's CPU time.
            policy={"search": "off"},
            **optional,
        )
        self.secrets = load_config(self.config, env={"TEST_VIEWER_TOKEN": VIEWER}).secrets()
        self.stderr: list[str] = []
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "--config", str(self.config), "--log-format", "json", "run"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "TEST_VIEWER_TOKEN": VIEWER},
        )
        _wait(lambda: self._answers("/api/v1/plan"))

    def _answers(self, path: str) -> bool:
        try:
            return self.get(path, VIEWER).status_code == 200
        except requests.ConnectionError:
            assert self.process is not None
            assert self.process.poll() is None, self.process.communicate()[1][-3000:]
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=120)
        assert self.process.returncode == 0, err[-3000:]
        self.stderr.append(err)
        self.process = None

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, headers=_auth(token) | kw.pop("headers", {}), timeout=60, **kw)

    def send(self, method: str, path: str, token: str | None = OPERATOR, body: Any = None) -> requests.Response:
        return requests.request(method, self.url + path, headers=_auth(token), json=body, timeout=60)

    def settled(self) -> list[dict[str, Any]]:
        """Waits until no migration runs; the recent ones, newest first."""
        answer = _wait(lambda: (m := self.get("/api/v1/migrations", VIEWER).json())["running"] == [] and m)
        recent: list[dict[str, Any]] = answer["recent"]
        return recent


def _auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


@pytest.fixture
def run(tmp_path: Path, sim: RunningSimulator) -> Iterator[Run]:
    running = Run(tmp_path, sim)
    running.start()
    try:
        yield running
    finally:
        if running.process is not None:
            running.process.kill()
            running.stderr.append(running.process.communicate()[1])


def _placement(sim: RunningSimulator) -> dict[int, str]:
    from pveapi.client import PveClient

    return {g.vmid: g.node for g in PveClient(sim.connection_settings()).resources().guests}


def _migrations_started(sim: RunningSimulator) -> list[int]:
    return [int(t["id"]) for t in sim.tasks() if t["type"] in ("qmigrate", "vzmigrate", "hamigrate")]


def test_roles_tokens_cors_and_reads(run: Run) -> None:
    for path in ("/api/v1/cluster", "/api/v1/plan", "/api/v1/migrations", "/api/v1/config"):
        assert run.get(path).status_code == 401 and "bearer token" in run.get(path).json()["error"]
        assert run.get(path, "wrong-token").status_code == 401
        assert run.get(path, OPERATOR).status_code == 200
    cluster = run.get("/api/v1/cluster", VIEWER).json()
    assert {n["name"] for n in cluster["nodes"]} == {"pve1", "pve2", "pve3", "pve4", "pve5"}
    web01 = next(g for g in cluster["guests"] if g["vmid"] == 100)
    assert "plb_anti_affinity_web" in web01["tags"] and any("anti-affinity" in r for r in web01["rules"])
    assert web01["source"] == "live" and cluster["imbalance"] > 0
    # A viewer may read, never act; the existing endpoints stay as they were.
    for method, path in (("POST", "/api/v1/cycle"), ("PUT", "/api/v1/automation"), ("POST", "/api/v1/migrations"),
                         ("POST", "/api/v1/plan"), ("POST", "/api/v1/plan/abc/apply")):
        answer = run.send(method, path, VIEWER, {"mode": "paused"})
        assert answer.status_code == 403 and "viewer token" in answer.json()["error"], (method, path)
        assert run.send(method, path, None).status_code == 401
    assert run.get("/health").json()["automation"] == "manual" and run.get("/plan").status_code == 200
    assert run.get("/api/v1/advice", VIEWER).status_code == 404  # no ai: block
    spec = run.get("/openapi.json").json()
    assert {"/api/v1/plan/{plan_id}/apply", "/api/v1/migrations", "/api/v1/automation",
            "/api/v1/nodes/{node}/drain", "/api/v1/nodes/{node}/undrain"} <= set(spec["paths"])

    def body(path: str, method: str = "post") -> dict[str, Any]:
        schema: dict[str, Any] = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        return schema

    # Each request body documented with its fields, the ones the API accepts.
    assert set(body("/api/v1/plan")["properties"]) == {"window", "statistic", "trigger", "max_moves", "drain", "leave_out"}
    assert body("/api/v1/plan")["properties"]["window"]["enum"] == ["1h", "6h", "24h", "7d"]
    one, batch = body("/api/v1/migrations")["oneOf"]
    assert one["required"] == ["vmid", "target"] and batch["properties"]["migrations"]["items"] == one
    assert body("/api/v1/automation", "put")["properties"]["mode"]["enum"] == ["manual", "automatic", "paused"]
    assert run.send("POST", "/api/v1/cycle").status_code == 202
    # CORS: the configured origin only.
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    ok = requests.options(run.url + "/api/v1/cycle", headers={"Origin": GRAFANA, **preflight}, timeout=30)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == GRAFANA
    other = requests.options(run.url + "/api/v1/cycle", headers={"Origin": "http://evil.example", **preflight}, timeout=30)
    assert "access-control-allow-origin" not in other.headers
    assert run.get("/api/v1/plan", VIEWER, headers={"Origin": GRAFANA}).headers["access-control-allow-origin"] == GRAFANA
    config = run.get("/api/v1/config", VIEWER)
    assert "<redacted>" in config.text and config.json()["run"]["listen"] == f"127.0.0.1:{run.port}"
    metrics = run.get("/metrics").text
    assert 'pvebalance_api_actions_total{action="cycle",result="forbidden"} 1.0' in metrics
    assert 'pvebalance_api_actions_total{action="cycle",result="ok"} 1.0' in metrics
    run.stop()
    everything = "".join(run.stderr) + config.text + json.dumps(cluster)
    assert not [s for s in run.secrets if s in everything]
    assert any(e["event"] == "api.action" and e["who"] == "grafana" and e["action"] == "cycle" for e in _events(run.stderr[0]))


def test_plans_migrations_and_automation(run: Run, sim: RunningSimulator) -> None:
    # A person's migration that would break anti-affinity (web03 next to web01 and web02) or
    # overcommit pve4 is refused with the reason; nothing starts.
    broken = run.send("POST", "/api/v1/migrations", body={"vmid": 102, "target": "pve1"})
    assert broken.status_code == 409 and "breaks anti-affinity" in broken.json()["error"]
    crowd = [{"vmid": v, "target": "pve4"} for v in (*range(104, 115), 116, 117, 118, 119, *range(123, 130))]
    over = run.send("POST", "/api/v1/migrations", body={"migrations": crowd})
    assert over.status_code == 409 and "above its limit" in over.json()["error"]
    assert run.send("POST", "/api/v1/migrations", body={"vmid": "x", "target": "pve4"}).status_code == 400
    assert _migrations_started(sim) == []
    # The published plan, applied by its id: exactly its moves.
    plan = run.get("/api/v1/plan", VIEWER).json()
    assert plan["moves"]
    assert run.send("POST", f"/api/v1/plan/{plan['plan_id']}/apply").status_code == 202
    recent = run.settled()
    assert {(m["vmid"], m["state"]) for m in recent} == {(m["vmid"], "succeeded") for m in plan["moves"]}
    assert all(m["task"].startswith("UPID:") and m["progress"] == 1.0 for m in recent)
    placement = _placement(sim)
    assert all(placement[m["vmid"]] == m["target"] for m in plan["moves"])
    # Its outcome is recorded like the loop's: what it predicted, to be measured at each horizon.
    [outcome] = run.get("/api/v1/outcomes", VIEWER).json()["outcomes"]
    assert outcome["predicted_imbalance"] == plan["imbalance"]["after"] and outcome["observed"] == {}
    assert {m["vmid"] for m in outcome["moves"]} == {m["vmid"] for m in plan["moves"]}
    # A what-if plan, then the cluster changes under it: refused with 409 and the reason.
    what_if = run.send("POST", "/api/v1/plan", body={"max_moves": 1, "drain": ["pve3"]}).json()
    assert what_if["moves"] and all(m["source"] == "pve3" for m in what_if["moves"])
    assert run.get("/api/v1/config", VIEWER).json()["policy"]["max_moves"] == 20  # the running config is untouched
    first = what_if["moves"][0]
    other = next(n for n in ("pve5", "pve4", "pve2") if n != first["target"])
    assert run.send("POST", "/api/v1/migrations", body={"vmid": first["vmid"], "target": other}).status_code == 202
    assert run.settled()[0]["state"] == "succeeded" and _placement(sim)[first["vmid"]] == other
    stale = run.send("POST", f"/api/v1/plan/{what_if['plan_id']}/apply")
    assert stale.status_code == 409 and "no longer holds" in stale.json()["error"]
    assert f"is on {other}" in stale.json()["error"]
    assert run.send("POST", "/api/v1/plan/0000000000000000/apply").status_code == 404
    # Paused: nothing migrates, not even on request; kept across a restart.
    assert run.send("PUT", "/api/v1/automation", body={"mode": "sideways"}).status_code == 400
    assert run.send("PUT", "/api/v1/automation", body={"mode": "paused"}).json() == {"automation": "paused"}
    # Paused is the reason given, before any rule or cooldown (139 may be in the plan just applied).
    refused = run.send("POST", "/api/v1/migrations", body={"vmid": 139, "target": "pve5"})
    assert refused.status_code == 409 and "paused" in refused.json()["error"]
    again = run.send("POST", f"/api/v1/plan/{plan['plan_id']}/apply")
    assert again.status_code == 409 and "paused" in again.json()["error"]
    refusals = run.settled()[:1 + len(plan["moves"])]  # shown as not started, with the reason
    assert {m["state"] for m in refusals} == {"not_started"} and 139 in {m["vmid"] for m in refusals}
    run.stop()
    run.start()
    assert run.get("/health").json()["automation"] == "paused"
    assert 'pvebalance_automation_mode{mode="paused"} 1.0' in run.get("/metrics").text
    assert run.send("PUT", "/api/v1/automation", body={"mode": "manual"}).status_code == 200
    assert run.get("/health").json()["automation"] == "manual"
    run.stop()
    events = [e for err in run.stderr for e in _events(err)]
    assert {e["action"] for e in events if e["event"] == "api.action" and e["who"] == "grafana"} >= {
        "migrate", "apply_plan", "plan", "automation"}
    assert not [s for s in run.secrets if any(s in err for err in run.stderr)]


def _rows(metrics: str, name: str) -> list[dict[str, str]]:
    """The label sets of a metric's series: the rows a Grafana table of that metric shows."""
    from prometheus_client.parser import text_string_to_metric_families

    return [dict(s.labels) for f in text_string_to_metric_families(metrics) for s in f.samples if s.name == name]


def _fill(template: str, row: dict[str, str], run: Run) -> str:
    """What Grafana sends: the row's fields and the dashboard's variables filled in."""
    for key, value in row.items():
        template = template.replace(f'${{__data.fields["{key}"]}}', value)
    return template.replace("${controller}", run.url).replace("${operator_token}", OPERATOR)


def _press(run: Run, button: dict[str, Any], row: dict[str, str]) -> requests.Response:
    fetch = button["fetch"]
    assert "${__data" not in _fill(button["confirmation"], row, run)  # the confirmation names what will happen
    headers = {k: _fill(v, row, run) for k, v in fetch["headers"]}
    body = _fill(fetch["body"], row, run)
    return requests.request(fetch["method"], _fill(fetch["url"], row, run), headers=headers,
                            data=body.encode() if body else None, timeout=60)


def test_the_dashboard_buttons_do_what_their_titles_say(run: Run, sim: RunningSimulator) -> None:
    board = json.loads((ROOT / "grafana" / "dashboards" / "balancer.json").read_text())
    buttons = {a["title"]: a for p in board["panels"] for a in p["fieldConfig"]["defaults"].get("actions", [])}
    assert set(buttons) == {"Apply this move", "Apply plan", "Plan now", "Pause automation", "Resume automation"}
    assert OPERATOR not in json.dumps(board) and "Bearer ${operator_token}" in json.dumps(board)
    token_box = next(v for v in board["templating"]["list"] if v["name"] == "operator_token")
    assert token_box["skipUrlSync"] and token_box["current"]["value"] == ""
    # "Apply this move" on the plan table's first row (pvebalance_plan_move_info's labels).
    row = next(r for r in _rows(run.get("/metrics").text, "pvebalance_plan_move_info") if r["step"] == "1")
    assert _press(run, buttons["Apply this move"], row).status_code == 202
    assert run.settled()[0]["state"] == "succeeded" and _placement(sim)[int(row["vmid"])] == row["target"]
    # "Plan now": a fresh cycle, so a new plan id.
    def cycles() -> float:
        lines = run.get("/metrics").text.splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith("pvebalance_cycles_total{"))

    before, old_id = cycles(), run.get("/api/v1/plan", VIEWER).json()["plan_id"]
    assert _press(run, buttons["Plan now"], {}).status_code == 202
    _wait(lambda: cycles() > before and run.get("/api/v1/plan", VIEWER).json()["plan_id"] != old_id)
    # "Apply plan" on the Controller table's row: that plan's moves, all of them.
    plan = run.get("/api/v1/plan", VIEWER).json()
    (info,) = _rows(run.get("/metrics").text, "pvebalance_plan_info")
    assert info["plan_id"] == plan["plan_id"] and plan["moves"]
    assert _press(run, buttons["Apply plan"], info).status_code == 202
    assert {m["vmid"] for m in run.settled() if m["what"] == f"plan {plan['plan_id']}" and m["state"] == "succeeded"} == {
        m["vmid"] for m in plan["moves"]}
    # Pause, then resume.
    assert _press(run, buttons["Pause automation"], info).status_code == 200
    assert run.get("/health").json()["automation"] == "paused"
    assert _press(run, buttons["Resume automation"], info).status_code == 200
    assert run.get("/health").json()["automation"] == "automatic"


def _run_of(run: Run, what: str) -> list[dict[str, Any]]:
    """The migrations of the API run named `what`, once it has planned and nothing runs."""
    migrations: list[dict[str, Any]] = _wait(lambda: (m := run.get("/api/v1/migrations", VIEWER).json())["running"] == [] and
                                             [e for e in m["recent"] if e["what"] == what])
    return migrations


def _accepted(run: Run, path: str) -> requests.Response:
    """POST `path` once the previous run has handed back the lock (a run's last step ends just after its migrations)."""
    def sent() -> requests.Response | None:
        answer = run.send("POST", path)
        return None if answer.status_code == 409 and "in progress" in answer.json()["error"] else answer

    accepted: requests.Response = _wait(sent)
    return accepted


def test_drain_and_undrain_a_node(run: Run, sim: RunningSimulator) -> None:
    assert run.send("POST", "/api/v1/nodes/pve4/drain", VIEWER).status_code == 403
    assert run.send("POST", "/api/v1/nodes/pve4/drain", None).status_code == 401
    unknown = run.send("POST", "/api/v1/nodes/pve9/drain")
    assert unknown.status_code == 404 and "pve9" in unknown.json()["error"]
    not_drained = run.send("POST", "/api/v1/nodes/pve4/undrain")
    assert not_drained.status_code == 409 and "not drained" in not_drained.json()["error"]
    was_there = {v for v, n in _placement(sim).items() if n == "pve4"}
    assert was_there
    assert run.send("POST", "/api/v1/nodes/pve4/drain").json() == {
        "accepted": "drain pve4", "progress": "/api/v1/migrations", "node": "pve4"}
    drained = _run_of(run, "drain pve4")
    left = {m["vmid"] for m in drained}
    assert {(m["source"], m["state"]) for m in drained} == {("pve4", "succeeded")}
    # legacy01 (140) is locked by a backup: Proxmox would refuse, so it stays, with the reason.
    assert {v for v, n in _placement(sim).items() if n == "pve4"} == was_there - left == {140}
    assert 'pvebalance_node_drained{node="pve4"} 1.0' in run.get("/metrics").text
    # The next plan places nothing on the drained node.
    assert all(m["target"] != "pve4" for m in run.send("POST", "/api/v1/plan").json()["moves"])
    assert _accepted(run, "/api/v1/nodes/pve4/undrain").status_code == 202
    returned = _run_of(run, "undrain pve4")
    # They come back where they fit and the rules allow; the others stay, each with the reason (logged).
    back = {m["vmid"] for m in returned}
    assert back and back <= left and {(m["target"], m["state"]) for m in returned} == {("pve4", "succeeded")}
    assert {v for v, n in _placement(sim).items() if n == "pve4"} == back | {140}
    metrics = run.get("/metrics").text
    assert 'pvebalance_api_actions_total{action="drain",result="ok"} 1.0' in metrics
    assert 'pvebalance_api_actions_total{action="drain",result="forbidden"} 1.0' in metrics
    assert 'pvebalance_api_actions_total{action="undrain",result="refused"} 1.0' in metrics
    run.stop()
    events = _events(run.stderr[0])
    assert {(e["action"], e["result"]) for e in events if e["event"] == "api.action" and e["who"] == "grafana"} >= {
        ("drain", "ok"), ("undrain", "ok"), ("undrain", "refused")}
    staying = {e["action"]: {int(line.split()[0]): line for line in e["staying"]} for e in events if e["event"] == "api.drain_ended"}
    assert set(staying["drain"]) == {140} and "locked" in staying["drain"][140]
    assert set(staying["undrain"]) == left - back


def test_a_what_if_plan_leaving_a_node_out(run: Run) -> None:
    # pve5 is nearly empty: the plan fills it; left out, it receives nothing and keeps its guests.
    usual = run.get("/api/v1/plan", VIEWER).json()
    assert any(m["target"] == "pve5" for m in usual["moves"])
    left_out = run.send("POST", "/api/v1/plan", body={"leave_out": ["pve5"]}).json()
    assert left_out["moves"] and not [m for m in left_out["moves"] if "pve5" in (m["target"], m["source"])]
    assert left_out["overrides"] == {"leave_out": ["pve5"]} and left_out["plan_id"] != usual["plan_id"]
    drained = run.send("POST", "/api/v1/plan", body={"drain": ["pve5"]}).json()
    assert any(m["source"] == "pve5" for m in drained["moves"])  # drain evacuates; leave_out does not
    for bad in ({"leave_out": ["pve9"]}, {"leave_out": [7]}, {"leave_out": "pve5", "spare": 1}):
        answer = run.send("POST", "/api/v1/plan", body=bad)
        assert answer.status_code == 400 and "error" in answer.json(), bad
    assert "pve9" in run.send("POST", "/api/v1/plan", body={"leave_out": ["pve9"]}).json()["error"]
    # A what-if trigger above the imbalance: no balancing, and a bad one is a 400, not a 500.
    calm = run.send("POST", "/api/v1/plan", body={"trigger": 0.99})
    assert calm.status_code == 200 and not [m for m in calm.json()["moves"] if m["kind"] == "balance"]
    # Checked as the config's policy block is: no more moves than a config may ask for.
    many = run.send("POST", "/api/v1/plan", body={"max_moves": 10**8})
    assert many.status_code == 400 and "plan overrides.max_moves: expected a whole number from 0 to 100000" \
        in many.json()["error"], many.text
    for bad_json in ('{"trigger": 1.5}', '{"trigger": "high"}', '{"trigger": NaN}'):
        answer = requests.post(run.url + "/api/v1/plan", data=bad_json, timeout=60,
                               headers={**_auth(OPERATOR), "Content-Type": "application/json"})
        assert answer.status_code == 400 and "plan overrides.trigger" in answer.json()["error"], bad_json
    assert "pve5" not in run.get("/api/v1/config", VIEWER).text  # the running config is untouched


def test_a_persons_migration_may_override_soft_rules_and_says_which(tmp_path: Path, sim: RunningSimulator) -> None:
    soft = {"anti_affinity": [{"name": "spread", "vmids": [120, 156], "strict": False}],
            "affinity": [{"name": "pair", "vmids": [120, 122], "strict": False}]}
    run = Run(tmp_path, sim, rules=soft)
    run.start()
    try:
        # ha-app01 (120, on pve2) to pve5: next to 156 (spread), away from 122 (pair), off the
        # HA should-rule's nodes pve1-pve3. All soft: it moves, and the answer names each one.
        answer = run.send("POST", "/api/v1/migrations", body={"vmid": 120, "target": "pve5"})
        assert answer.status_code == 202, answer.text
        overrides = answer.json()["overrides"]
        assert [line.split(" overrides ")[1].split(" (")[0] for line in overrides] == [
            "anti-affinity group 'spread'", "affinity group 'pair'", "node affinity 'ha-core-nodes'"]
        assert all(line.startswith("120 -> pve5 overrides ") for line in overrides)
        assert run.settled()[0]["state"] == "succeeded" and _placement(sim)[120] == "pve5"
        # Hard rules are still refused: web03 (102) next to web01 on pve1; so is an unknown target.
        hard = run.send("POST", "/api/v1/migrations", body={"vmid": 102, "target": "pve1"})
        assert hard.status_code == 409 and "breaks anti-affinity" in hard.json()["error"]
        # A move that keeps every soft rule overrides none (120 itself is in its cooldown now).
        cooling = run.send("POST", "/api/v1/migrations", body={"vmid": 120, "target": "pve1"})
        assert cooling.status_code == 409 and "cooldown" in cooling.json()["error"]
        back = run.send("POST", "/api/v1/migrations", body={"vmid": 156, "target": "pve4"})
        assert back.status_code == 202 and back.json()["overrides"] == []
        run.settled()
        run.stop()
        (logged,) = [e for e in _events(run.stderr[0]) if e["event"] == "api.action" and e["detail"].get("overrides")]
        assert logged["detail"]["overrides"] == overrides
    finally:
        if run.process is not None:
            run.process.kill()


def test_advice_through_the_api_is_the_advisor_s_and_counted_on_the_controller_s_metrics(
    tmp_path: Path, sim: RunningSimulator
) -> None:
    (tmp_path / "ai.key").write_text(API_KEY + "\n")
    with running_llm("openai", [reply_with(GOOD)]) as llm:
        run = Run(tmp_path, sim, ai={"provider": "openai", "model": "test-model", "base_url": llm.url,
                                     "api_key_file": "ai.key", "timeout": 10})
        run.start()
        try:
            answer = run.get("/api/v1/advice", VIEWER)
            assert answer.status_code == 200 and answer.json()["ai_plan"]["moves"], answer.text
            metrics = run.get("/metrics").text
            assert 'pvebalance_advisor_requests_total{provider="openai",result="ok"} 1.0' in metrics
            assert API_KEY not in answer.text + metrics
        finally:
            run.stop()
