"""Safety promises tried the way someone breaks them: history far below live memory, a
reviewed plan, refused migrations, another cluster's state file, bad listen addresses, a
closed pipe and hostile HTTP clients. Invariants are checked after every fault."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from controller.cli import main
from controller.config import load_config
from controller.cycle import run_cycle
from controller.executor import Executor
from controller.loop import Controller
from controller.promql import PromQL
from controller.server import ControllerServer
from pveapi.client import PveClient
from simulator import scenario as scenarios
from simulator.scenario import ALL_PRIVILEGES
from testkit.processes import without_progress
from testkit.prometheus import running_prometheus, write_history
from tests.controller.conftest import Watch, write_config
from tests.controller.history import GIB, exporter_samples
from tests.support.sim import RunningSimulator, running_simulator

ROOT = Path(__file__).resolve().parents[2]
NO_MIGRATE = "00000000-0000-4000-8000-0000000a0403"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _process(*args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "controller.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


# --- item 2: memory from the larger of live and history ---------------------------------------

# Three 40 GiB nodes: pve1 runs hot on CPU, pve2 and pve3 are nearly full of memory (31.4 GiB of
# the 36 GiB the default headroom allows). Any guest of pve1 (7.2 GiB live) would overcommit them.
TIGHT = {
    "name": "tight", "cluster": {"name": "tight"}, "seed": 1,
    "nodes": [{"name": f"pve{i}", "cores": 16, "memory": "40GiB"} for i in (1, 2, 3)],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True, "content": "images,rootdir", "size": "8TiB"}],
    "guests": [
        {"vmid": 100 + i, "type": "qemu", "name": f"hot{i}", "node": "pve1", "cpus": 8, "memory": "8GiB",
         "cpu": {"profile": "constant", "level": 0.9}, "mem": {"profile": "constant", "level": 0.9}}
        for i in range(4)
    ] + [
        {"vmid": 200 + i, "type": "qemu", "name": f"full{i}", "node": f"pve{2 + i % 2}", "cpus": 2, "memory": "8GiB",
         "cpu": {"profile": "constant", "level": 0.05}, "mem": {"profile": "constant", "level": 0.98}}
        for i in range(8)
    ],
}


def test_history_far_below_live_memory_never_overcommits_a_node(tmp_path: Path) -> None:
    with running_simulator(TIGHT, time_scale=0) as sim:
        client = PveClient(sim.connection_settings())
        live = {g.id: g for g in client.resources().guests}
        now = time.time()
        # The exporter's history says every guest uses a tenth of what it holds now.
        samples = exporter_samples({gid: (int(g.maxcpu), g.maxmem) for gid, g in live.items()},
                                   lambda gid, i: live[gid].cpu, lambda gid, i: live[gid].mem / 10,
                                   now - 20 * 60, now - 30)
        write_history(tmp_path / "tsdb", samples)
        with running_prometheus(tmp_path / "tsdb") as prom:
            config = load_config(write_config(tmp_path, sim, prometheus={"url": prom.url}, apply={"poll_interval": 5}))
            assert config.prometheus is not None
            cycle = run_cycle(client, PromQL(config.prometheus), config)
            assert cycle.observation.data_problem is None and cycle.plan.sources == {"prometheus": 12}
            watch = Watch(sim, client)
            watch.sample()
            limits = {n.name: n.maxmem - config.policy.headroom_for(n.name).reserved(n.maxmem) for n in client.resources().nodes}
            peak: dict[str, int] = {}

            def step(seconds: float) -> None:
                watch.sleep(seconds)
                for node in client.resources().nodes:
                    peak[node.name] = max(peak.get(node.name, 0), node.mem)

            report = Executor(client, cycle.rules, config.policy, config.apply, sleep=step).apply(cycle.plan, cycle.model)
            watch.sample()
    # Whatever the plan: no node above its memory limit at any step, every guest once on an online node.
    over = {n: f"{m / GIB:.1f} GiB > {limits[n] / GIB:.1f} GiB" for n, m in peak.items() if m > limits[n]}
    assert over == {} and watch.problems == [], (over, watch.problems, report.outcomes)
    assert watch.moved_within(config.run.cooldown) == {}
    # The planner saw the live memory: it moved nothing onto the full nodes.
    assert all(m.mem_bytes >= live[f"qemu/{m.vmid}"].mem for m in cycle.plan.moves)


# --- item 5: the plan you read is the plan that runs ------------------------------------------


def test_apply_shows_its_plan_first_and_carries_out_exactly_a_reviewed_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running_simulator("demo", time_scale=600) as sim:
        few = write_config(tmp_path, sim, policy={"max_moves": 1})
        saved = tmp_path / "plan.json"
        code, out, _ = _cli(capsys, "--config", str(few), "plan", "--save", str(saved))
        document = json.loads(saved.read_text())
        count = len(document["moves"])
        assert code == 0 and f"Plan {document['plan_id']}" in out and count
        # A fresh apply with another budget plans differently: it shows its plan, says it differs, then acts.
        (tmp_path / "fresh").mkdir()
        more = write_config(tmp_path / "fresh", sim, run={"state_file": str(tmp_path / "state.json")})
        code, out, err = _cli(capsys, "--config", str(more), "apply", "--dry-run")
        assert code == 0, out + err
        lines = out.splitlines()
        assert lines[0].startswith("Plan ") and lines[0] != f"Plan {document['plan_id']}"
        assert f"differs from the last saved plan ({document['plan_id']}" in out and f"apply --plan {saved}" in out
        assert out.index("Moves (") < out.index("[1/")
        # The reviewed plan runs as reviewed: its moves, in its order, shown first.
        code, out, err = _cli(capsys, "--config", str(more), "apply", "--plan", str(saved))
        assert code == 0, out + err
        assert f"Plan {document['plan_id']}" in out and out.index(f"Moves ({count}") < out.index(f"[1/{count}]")
        assert f"{count} succeeded, 0 failed, 0 dropped" in out
        started = {int(t["id"]) for t in sim.tasks() if t["type"] in ("qmigrate", "vzmigrate", "hamigrate")}
        assert started == {m["vmid"] for m in document["moves"]}
        # An edited plan is not the reviewed plan.
        document["moves"] = document["moves"][:1]
        saved.write_text(json.dumps(document))
        code, _, err = _cli(capsys, "--config", str(more), "apply", "--plan", str(saved))
        assert code == 2 and "do not match its plan id" in err and err.count("\n") == 1


def test_the_plan_id_depends_on_what_the_plan_was_made_from(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim)
    ids = [json.loads(_cli(capsys, "--config", str(config), "plan", "--output", "json")[1])["plan_id"] for _ in range(2)]
    other = write_config(tmp_path, frozen_sim, policy={"max_moves": 1})
    changed = json.loads(_cli(capsys, "--config", str(other), "plan", "--output", "json")[1])["plan_id"]
    assert ids[0] == ids[1] and changed != ids[0] and len(changed) == 16


# --- item 6: a refused migration is not a move ------------------------------------------------


def test_a_refused_migration_puts_no_guest_in_cooldown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    data["tokens"].append({"user": "root@pam", "name": "nomigrate", "value": NO_MIGRATE,
                           "privileges": [p for p in ALL_PRIVILEGES if p != "VM.Migrate"]})
    with running_simulator(data, time_scale=0) as sim:
        config = write_config(tmp_path, sim, proxmox={"token_name": "nomigrate", "token_value": NO_MIGRATE},
                              run={"lease": "local"})
        code, out, _ = _cli(capsys, "--config", str(config), "apply")
        assert code == 1 and "refused" in out and "3 failed" in out
        assert not any(t["type"].endswith("migrate") for t in sim.tasks())
        code, out, _ = _cli(capsys, "--config", str(config), "plan")
    assert code == 0 and "cooldown" not in out, out


# --- item 7: state per cluster; dry runs write nothing ----------------------------------------


def test_a_state_file_of_another_cluster_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    other = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    other["cluster"] = {"name": "rehearsal"}
    with running_simulator("demo", time_scale=600) as sim:
        config = write_config(tmp_path, sim, policy={"max_moves": 2}, run={"lease": "local"})
        assert _cli(capsys, "--config", str(config), "apply")[0] == 0
    assert json.loads(state.read_text())["cluster"] == "cluster demo"
    with running_simulator(other, time_scale=0) as sim:
        config = write_config(tmp_path, sim, run={"lease": "local"})
        for command in (["plan"], ["apply", "--dry-run"], ["run", "--once"]):
            code, out, err = _cli(capsys, "--config", str(config), *command)
            last = err.strip().splitlines()[-1]  # the simulator's start-up line comes before it
            assert code == 2 and "belongs to cluster demo" in last and "cluster rehearsal" in last, (command, out, err)
            assert "Traceback" not in err and "cooldown" not in out


def test_dry_runs_write_nothing(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, frozen_sim, run={"state_file": "state/state.json"})
    for command in (["plan"], ["apply", "--dry-run"], ["run", "--once", "--dry-run"]):
        code, out, err = _cli(capsys, "--config", str(config), *command)
        assert code == 0, out + err
    assert not (tmp_path / "state").exists()


# --- item 8: one line and exit 2 --------------------------------------------------------------


def test_an_unwritable_state_directory_is_one_line(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("not a directory\n")
    config = write_config(tmp_path, frozen_sim, run={"state_file": "file/state.json", "lease": "local"})
    code, _, err = _cli(capsys, "--config", str(config), "apply")
    assert code == 2 and "cannot write it" in err and "run.state_file" in err and err.count("\n") == 1


@pytest.mark.parametrize("listen", ["busy", "127.0.0.1:99999", "no-such-host.invalid:9883"])
def test_a_listen_address_that_cannot_be_used_is_one_line(frozen_sim: RunningSimulator, tmp_path: Path, listen: str) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    if listen == "busy":
        listen = f"127.0.0.1:{holder.getsockname()[1]}"
    config = write_config(tmp_path, frozen_sim, run={"listen": listen})
    process = _process("--config", str(config), "run")
    try:
        _, err = process.communicate(timeout=120)
    finally:
        holder.close()
    assert process.returncode == 2 and "run.listen" in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_closed_pipe_ends_plan_quietly(frozen_sim: RunningSimulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, frozen_sim)
    process = _process("--config", str(config), "plan")
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before anything is written, as with `| head -1`
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and without_progress(err) == []


# --- items 8 and 9: controller HTTP -----------------------------------------------------------


@pytest.fixture
def server(frozen_sim: RunningSimulator, tmp_path: Path) -> Iterator[ControllerServer]:
    config = load_config(write_config(tmp_path, frozen_sim, run={"webhook_token": "hook-s3cret"}))
    controller = Controller(config, PveClient(config.proxmox), None)
    server = ControllerServer(("127.0.0.1", 0), controller.endpoints())
    server.start()
    yield server
    server.stop()


def _raw(server: ControllerServer, request: bytes, timeout: float = 60) -> bytes:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


AUTH = b"Authorization: Bearer hook-s3cret\r\n"


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1, 2"])
def test_a_bad_content_length_is_refused_even_with_the_token(server: ControllerServer, length: bytes) -> None:
    answer = _raw(server, b"POST /webhook HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: " + length + b"\r\n\r\n{}")
    assert answer.split(b"\r\n")[0].startswith(b"HTTP/1.1 400"), answer[:200]
    assert requests.get(server.url + "/health", timeout=30).status_code in (200, 503)


def test_a_body_over_the_cap_is_refused_whatever_the_headers_say(server: ControllerServer) -> None:
    declared = _raw(server, b"POST /webhook HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Length: 2000000\r\n\r\n")
    assert b" 413 " in declared.split(b"\r\n")[0], declared[:200]
    chunked = requests.post(server.url + "/webhook", data=iter([b"x" * 65536] * 20),
                            headers={"Authorization": "Bearer hook-s3cret"}, timeout=30)
    assert chunked.status_code == 413
    alert = {"alerts": [{"status": "firing", "labels": {"alertname": "PveNodeHot"}}]}
    ok = requests.post(server.url + "/webhook", json=alert, headers={"Authorization": "Bearer hook-s3cret"}, timeout=30)
    assert ok.status_code == 202 and ok.json() == {"triggered": True, "firing": 1}


def test_half_open_connections_neither_starve_the_server_nor_stay_forever(server: ControllerServer) -> None:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    idle = []
    for i in range(200):
        conn = socket.create_connection((host, int(port)), timeout=120)
        if i % 2:
            conn.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
        idle.append(conn)
    try:
        assert requests.get(server.url + "/health", timeout=30).status_code in (200, 503)
        assert requests.get(server.url + "/metrics", timeout=30).status_code == 200
        # The server closes every one of them by itself (recv sees the end, not our timeout).
        closed = [conn.recv(1024) == b"" or conn.recv(1024) == b"" for conn in idle]
        assert all(closed)
    finally:
        for conn in idle:
            conn.close()
    assert requests.get(server.url + "/health", timeout=30).status_code in (200, 503)
