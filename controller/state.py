"""What the loop must remember across restarts, and the one-controller-per-cluster lock.

The state file is small JSON, replaced atomically: when each guest last moved (its cooldown
must survive a restart) and since when the imbalance has been above the trigger (the hold
time), and the automation mode an operator chose through the API (manual, automatic or
paused; it outlives a restart). Next to it, `<state file>.lock` is held with flock(2) by the instance allowed to
migrate; it also names the holder (pid, host, start) so a second instance can say who.
flock works between processes of one host (and NFS v4 with working locks); controllers on
other hosts, or with other state files, are kept out by the cluster lease (controller/lease.py).
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from controller.jsonfile import read_json, unwritable, write_json
from pveapi.errors import ConfigError, PvebalanceError

AUTOMATION_MODES = ("manual", "automatic", "paused")  # paused: nothing migrates, not even on request


class ControllerBusy(PvebalanceError):
    """This instance must not migrate: another controller holds the lock or the cluster lease,
    or the lease cannot be taken (the message says which)."""


@dataclass
class LoopState:
    """The loop's memory for one cluster. The file names the cluster it belongs to
    (`cluster_identity`): cooldowns of one cluster must never hold, or free, guests of another."""

    path: Path
    cluster: str
    moved: dict[int, float] = field(default_factory=dict)  # vmid -> unix time of its last migration
    above_trigger_since: float | None = None
    automation: str | None = None  # set through PUT /api/v1/automation; None: the config's run.automation
    writable: bool = True  # False for dry runs: they change nothing on disk

    @classmethod
    def load(cls, path: Path, cluster: str, writable: bool = True) -> LoopState:
        # Refused rather than forgotten when unreadable: guests could move again too soon.
        data = read_json(path, "state file", "cooldowns it holds are then lost")
        if data is None:
            return cls(path, cluster, writable=writable)
        try:
            owner = data.get("cluster")  # absent in files written before version 2: adopted
            moved = {int(k): float(v) for k, v in dict(data.get("moved", {})).items()}
            since = data.get("above_trigger_since")
            automation = data.get("automation")
            if automation not in (None, *AUTOMATION_MODES):
                raise ValueError(automation)
            state = cls(path, cluster, moved, None if since is None else float(since), automation, writable)
        except (TypeError, ValueError, AttributeError):
            raise ConfigError(f"state file {path}: not a pvebalance state file; fix or remove it") from None
        if owner is not None and owner != cluster:
            raise ConfigError(
                f"state file {path} belongs to {owner}, but the API answers as {cluster}: "
                "give each cluster its own run.state_file"
            )
        return state

    def save(self) -> None:
        if not self.writable:
            return
        payload = {"version": 2, "cluster": self.cluster, "moved": {str(k): v for k, v in sorted(self.moved.items())},
                   "above_trigger_since": self.above_trigger_since, "automation": self.automation}
        write_json(self.path, payload, "state file")

    def record_move(self, vmid: int, at: float) -> None:
        self.moved[vmid] = at
        self.save()

    def forget_move(self, vmid: int) -> None:
        """Take back a mark for a migration that never started (the API refused it)."""
        if self.moved.pop(vmid, None) is not None:
            self.save()

    def cooling(self, now: float, cooldown: float) -> Mapping[int, float]:
        """vmid -> seconds left of its cooldown, for guests moved within `cooldown`."""
        return {vmid: at + cooldown - now for vmid, at in self.moved.items() if now - at < cooldown}

    def forget_before(self, cutoff: float) -> None:
        """Drop records older than any cooldown could need, so the file stays small."""
        self.moved = {vmid: at for vmid, at in self.moved.items() if at >= cutoff}


class ControllerLock:
    """An exclusive, non-blocking flock on `<state file>.lock`, released on close or process exit."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise ConfigError(unwritable(self.path, exc, "state file")) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise ControllerBusy(
                f"another pvebalance controller holds {self.path} ({holder}); only one may migrate "
                "per cluster - stop it first, or run this one in manual mode"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

