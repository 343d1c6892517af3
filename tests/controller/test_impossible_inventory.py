"""An inventory that cannot be true is refused before anything is planned: `plan` and `apply`
exit 2 with one line naming the guest, `run` fails the cycle, and nothing migrates.

The simulator's `answer` fault makes /cluster/resources return exactly the (bad) body a test
builds from the real answer, as a broken or hostile API would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from pveapi.client import PveClient
from tests.controller.conftest import write_config
from tests.support.sim import RunningSimulator

Entries = list[dict[str, Any]]


def _guest(entries: Entries, vmid: int) -> dict[str, Any]:
    return next(e for e in entries if e.get("vmid") == vmid)


def _duplicate(entries: Entries) -> Entries:
    copy = {**_guest(entries, 101), "node": "pve4" if _guest(entries, 101)["node"] != "pve4" else "pve3"}
    return [*entries, copy]


def _unknown_node(entries: Entries) -> Entries:
    _guest(entries, 101)["node"] = "pve9"
    return entries


def _figure(key: str, value: Any) -> Callable[[Entries], Entries]:
    def change(entries: Entries) -> Entries:
        _guest(entries, 101)[key] = value
        return entries

    return change


BAD_ANSWERS: dict[str, tuple[Callable[[Entries], Any], str]] = {
    "one vmid on two nodes": (_duplicate, "guest 101 is listed on both"),
    "a guest on an unlisted node": (_unknown_node, "guest 101 (web02) is on node pve9, which is not in the node list"),
    "negative memory": (_figure("mem", -8 * 2**30), "guest 'qemu/101'.mem: expected a whole number from 0 to"),
    "NaN memory": (_figure("maxmem", float("nan")), "guest 'qemu/101'.maxmem: expected a whole number from 0 to 1152921504606846976, got nan"),
    "infinite cpu": (_figure("cpu", float("inf")), "guest 'qemu/101'.cpu: expected a number from 0 to 64, got inf"),
    "1e308 memory": (_figure("maxmem", 1e308), "guest 'qemu/101'.maxmem: expected a whole number"),
    "a vmid that is text": (_figure("vmid", "abc"), "guest 'qemu/101'.vmid: expected a VMID"),
    "a name that is an object": (_figure("name", {"a": [1]}), "guest 'qemu/101'.name: expected text, got {'a': [1]}"),
    "deeply nested JSON": (lambda entries: "NESTED", "nested too deeply"),
}


def _serve(sim: RunningSimulator, change: Callable[[Entries], Any]) -> None:
    client = PveClient(sim.connection_settings())
    entries = client.get("/cluster/resources")
    changed = change(entries)
    body = "{\"data\": " + "[" * 100_000 + "]" * 100_000 + "}" if changed == "NESTED" else json.dumps({"data": changed})
    sim.inject_fault({"type": "answer", "endpoint": "GET /cluster/resources", "body": body})


def _migrations(sim: RunningSimulator) -> list[dict[str, Any]]:
    return [t for t in sim.tasks() if t["type"].endswith("migrate")]


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_plan_and_apply_refuse_an_impossible_inventory(
    case: str, frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, expected = BAD_ANSWERS[case]
    _serve(frozen_sim, change)
    config = write_config(tmp_path, frozen_sim)
    for command in ("plan", "apply"):
        capsys.readouterr()
        code = main(["--config", str(config), command])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and "Traceback" not in err, (command, out, err)
        lines = [line for line in err.splitlines() if line.startswith("pvebalance: ")]  # apply also logs events
        assert len(lines) == 1 and lines[0].startswith("pvebalance: Proxmox API /cluster/resources: "), err
        assert expected in lines[0]
        if case != "deeply nested JSON":
            assert "refusing to plan on an answer that cannot be true" in err
    assert _migrations(frozen_sim) == []


def test_run_fails_the_cycle_on_an_impossible_inventory(
    frozen_sim: RunningSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _serve(frozen_sim, _duplicate)
    config = write_config(tmp_path, frozen_sim, run={"automation": "automatic", "hold_time": 0, "lease": "local"})
    capsys.readouterr()
    code = main(["--config", str(config), "run", "--once"])
    out, err = capsys.readouterr()
    assert code == 1 and out.startswith("failed: ") and "guest 101 is listed on both" in out
    assert "Traceback" not in out + err
    assert _migrations(frozen_sim) == []
