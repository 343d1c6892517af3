"""The loop's state file (cooldowns survive a restart) and the one-controller lock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from controller.state import ControllerBusy, ControllerLock, LoopState
from pveapi.errors import ConfigError


def test_cooldowns_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = LoopState.load(path, "cluster demo")
    state.record_move(100, at=1000.0)
    state.record_move(101, at=5000.0)
    again = LoopState.load(path, "cluster demo")  # a new process reading the file
    assert again.cooling(now=5600.0, cooldown=3600.0) == {101: 3000.0}
    again.forget_before(5600.0 - 3600.0)
    again.save()
    assert json.loads(path.read_text())["moved"] == {"101": 5000.0}


def test_a_damaged_state_file_is_refused_not_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"state file .*state\.json: unreadable .* fix or remove it"):
        LoopState.load(path, "cluster demo")
    path.write_text('{"moved": {"abc": 1}}')
    with pytest.raises(ConfigError, match="not a pvebalance state file"):
        LoopState.load(path, "cluster demo")


def test_a_second_controller_is_refused_and_told_who_holds_the_lock(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from controller.state import ControllerLock
            lock = ControllerLock(Path({str(state)!r}))
            lock.acquire()
            print("held", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ControllerBusy, match=rf"holds .*state\.json\.lock \(pid {holder.pid} on .+ since .+\); only one"):
            ControllerLock(state).acquire()
    finally:
        holder.communicate("")  # the holder exits; the kernel releases its lock
    lock = ControllerLock(state)
    lock.acquire()
    assert lock.held
    lock.release()
