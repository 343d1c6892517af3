"""One migrating controller per cluster, seen by the cluster: the lease in a Proxmox pool.

Controllers here never share a state file, so the local lock cannot be what stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import Config, load_config
from controller.lease import ClusterLease, Holder
from controller.loop import Controller
from pveapi.client import PveClient
from simulator import scenario as scenarios
from testkit.processes import free_port, without_progress
from tests.controller.conftest import write_config
from tests.controller.test_run_process import ROOT, _running_migration, _wait, real_time_sim  # noqa: F401 - fixture
from tests.support.sim import RunningSimulator, running_simulator

AUTO = {"automation": "automatic", "hold_time": 0, "cooldown": "1h", "interval": "5m"}
LEASE = "pvebalance-lease"
NO_POOL_TOKEN = "00000000-0000-4000-8000-00000000a11c"  # balancer@pve!nopool: everything but Pool.Allocate


def _config(tmp_path: Path, name: str, sim: RunningSimulator, **run: Any) -> Config:
    directory = tmp_path / name
    directory.mkdir()
    return load_config(write_config(directory, sim, run={**AUTO, **run}, apply={"poll_interval": 5, "max_in_flight": 1}))


def _controller(sim: RunningSimulator, config: Config, sleep: Any = None) -> Controller:
    return Controller(config, PveClient(config.proxmox), None, clock=sim.clock, sleep=sleep or sim.advance)


def _lease_pools(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [p for p in PveClient(sim.connection_settings()).get("/pools") if p["poolid"] == LEASE]


def _migrations(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [t for t in sim.tasks() if t["type"].endswith("migrate")]


def test_a_second_controller_refuses_naming_the_holder_until_the_first_exits(frozen_sim: RunningSimulator, tmp_path: Path) -> None:
    first = _controller(frozen_sim, _config(tmp_path, "a", frozen_sim))
    second = _controller(frozen_sim, _config(tmp_path, "b", frozen_sim))
    try:
        assert first.cycle().result == "applied"
        comment = _lease_pools(frozen_sim)[0]["comment"]
        assert f"pid={os.getpid()}" in comment and "until=" in comment  # visible to anyone reading the pool
        started = len(_migrations(frozen_sim))
        frozen_sim.advance(3600)  # cooldowns over: the second would have work to do
        refused = second.cycle()
        assert refused.result == "skipped" and "holds the cluster lease (pool 'pvebalance-lease'" in refused.reason
        assert f"pid {os.getpid()} on " in refused.reason and ", until " in refused.reason
        assert len(_migrations(frozen_sim)) == started and not second.health()[1]["lock_held"]
        first.release()  # a clean exit gives the lease back
        assert _lease_pools(frozen_sim) == []
        assert second.cycle().result in ("applied", "planned") and second.lease is not None and second.lease.held
    finally:
        first.release()
        second.release()
    assert _lease_pools(frozen_sim) == []


def test_a_controller_that_lost_its_lease_starts_no_further_migration(frozen_sim: RunningSimulator, tmp_path: Path) -> None:
    config = _config(tmp_path, "a", frozen_sim)
    client = PveClient(frozen_sim.connection_settings())
    now = float(int(time.time()))  # the comment keeps whole seconds
    usurper = Holder("0ther", "otherhost", 999, now, now + 3600)

    def take_over_then_advance(seconds: float) -> None:
        """Another controller takes the lease over while the first migration runs."""
        if Holder.parse(_lease_pools(frozen_sim)[0]["comment"]) != usurper:
            client.put("/pools", poolid=LEASE, comment=usurper.comment())
        frozen_sim.advance(seconds)

    controller = _controller(frozen_sim, config, sleep=take_over_then_advance)
    try:
        summary = controller.cycle()
        metrics = controller.metrics.render().decode()
    finally:
        controller.release()
    assert summary.report is not None and summary.moves > 1
    outcomes = summary.report.outcomes
    assert [o.result for o in outcomes].count("succeeded") == 1  # the running one was watched to its end
    assert len(_migrations(frozen_sim)) == 1
    stopped = summary.report.stopped or ""
    assert "the controller lease was lost: lease taken over (pid 999 on otherhost" in stopped
    assert all(o.result == "not_started" for o in outcomes[1:])
    assert Holder.parse(_lease_pools(frozen_sim)[0]["comment"]) == usurper  # not deleted on exit: not ours
    assert "pvebalance_lock_held 0.0" in metrics  # as soon as the loss was seen, not at the next cycle


def test_lease_local_takes_no_lease_and_says_so(frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pveapi.logsetup import configure_logging

    configure_logging("console", "info")
    controller = _controller(frozen_sim, _config(tmp_path, "a", frozen_sim, lease="local"))
    try:
        assert controller.cycle().result == "applied"
        assert _lease_pools(frozen_sim) == []
    finally:
        controller.release()
    assert "lease.local" in capsys.readouterr().err


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.cli", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_token_without_pool_allocate_gets_one_clear_error(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(scenarios.__file__).parent / "scenarios" / "demo.yaml").read_text())
    allowed = [p for p in scenarios.ALL_PRIVILEGES if p != "Pool.Allocate"]
    data["tokens"].append({"user": "balancer@pve", "name": "nopool", "value": NO_POOL_TOKEN, "privileges": allowed})
    with running_simulator(data, time_scale=0) as sim:
        config = write_config(tmp_path, sim, token_value=NO_POOL_TOKEN, proxmox={"user": "balancer@pve", "token_name": "nopool"},
                              run={"automation": "automatic"})
        applied = _cli(config, "apply")
        dry = _cli(config, "apply", "--dry-run")  # never migrates: needs no lease
        checked = _cli(config, "check")
        migrations = _migrations(sim)
    lines = without_progress(applied.stderr)
    assert applied.returncode == 2 and len(lines) == 1, applied.stderr
    assert lines[0].startswith("pvebalance: cannot take the controller lease (pool 'pvebalance-lease'): ")
    assert "HTTP 403 Permission check failed (/pool/pvebalance-lease, Pool.Allocate)" in lines[0]
    assert "run.lease: local" in lines[0] and NO_POOL_TOKEN not in applied.stderr
    assert dry.returncode == 0 and dry.stdout.strip().splitlines()[-1].startswith("dry run: "), dry.stdout + dry.stderr
    problems = [line for line in checked.stdout.splitlines() if line.startswith("problem: ")]
    assert problems == ["problem: the API token lacks Pool.Allocate on /pool/pvebalance-lease: apply and automatic run "
                        "cannot take the controller lease; grant PVEPoolAdmin on /pool (docs/proxmox-permissions.md), "
                        "or set run.lease: local if only one controller ever runs against this cluster"]
    assert migrations == []


def test_a_killed_holder_s_lease_expires_and_another_controller_takes_over(real_time_sim: RunningSimulator, tmp_path: Path) -> None:  # noqa: F811 - the fixture imported above
    configs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        configs.append(write_config(
            tmp_path / name, real_time_sim,
            run={"automation": "automatic", "hold_time": 0, "interval": "1h", "lease_ttl": "8s",
                 "listen": f"127.0.0.1:{free_port()}"},
            apply={"poll_interval": 0.3, "max_in_flight": 1}, policy={"max_moves": 2},
        ))
    first = subprocess.Popen([sys.executable, "-m", "controller.cli", "--config", str(configs[0]), "run"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(lambda: _running_migration(real_time_sim))
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    # The TTL leaves room for a loaded machine: the second controller must start, observe and
    # read the lease before the dead holder's lease expires (until + TTL/4).
    refused = _cli(configs[1], "run", "--once")
    assert refused.stdout.startswith("skipped: another pvebalance controller holds the cluster lease")
    assert f"pid {first.pid} on " in refused.stdout
    dead = Holder.parse(_lease_pools(real_time_sim)[0]["comment"])
    assert dead is not None and dead.pid == first.pid  # nobody gave it back
    lease = ClusterLease(PveClient(real_time_sim.connection_settings()), LEASE, 8)
    _wait(lambda: lease.expired(dead, time.time()))
    taken = _cli(configs[1], "run", "--once")
    assert taken.returncode == 0 and taken.stdout.split(":")[0] in ("applied", "planned"), taken.stdout + taken.stderr[-2000:]
    assert '"lease.takeover"' in taken.stderr and _lease_pools(real_time_sim) == []  # taken, then given back on exit


def test_a_lease_whose_confirmation_was_lost_is_still_ours(frozen_sim: RunningSimulator, tmp_path: Path) -> None:
    """The create went through but the read confirming it failed: the next try must find the
    lease its own, not refuse itself as "another controller", and a release must delete it."""
    lease = ClusterLease(PveClient(frozen_sim.connection_settings()), LEASE, 60.0, clock=frozen_sim.clock)
    fault = frozen_sim.inject_fault({"type": "error", "endpoint": "GET /pools", "status": 596, "message": "Connection timed out"})[0]
    try:
        lease.acquire()
    except Exception as exc:  # noqa: BLE001 - whatever it raises, the pool is left behind
        assert "596" in str(exc) or "timed out" in str(exc)
    frozen_sim.clear_faults(fault)
    assert not lease.held and len(_lease_pools(frozen_sim)) == 1
    lease.acquire()
    assert lease.held
    lease.release()
    assert _lease_pools(frozen_sim) == []
