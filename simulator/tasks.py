"""Proxmox worker tasks: UPIDs in the exact format and the records task endpoints serve."""

from __future__ import annotations

from dataclasses import dataclass, field


def format_upid(node: str, pid: int, pstart: int, starttime: int, kind: str, ident: str, user: str) -> str:
    # pstart may need 9 hex digits on a host up for long enough; %08X widens as PVE's does.
    return f"UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{ident}:{user}:"


def parse_upid(upid: str) -> dict[str, object] | None:
    """The fields of a UPID, or None when it is not one (the API then answers 400)."""
    parts = upid.split(":")
    if len(parts) != 9 or parts[0] != "UPID" or parts[8] != "":
        return None
    try:
        return {"node": parts[1], "pid": int(parts[2], 16), "pstart": int(parts[3], 16),
                "starttime": int(parts[4], 16), "type": parts[5], "id": parts[6], "user": parts[7]}
    except ValueError:
        return None


# A migration's RAM-transfer phase logs a progress line about this often (PVE: every second).
PROGRESS_LINES = 10


def render_bytes(size: float) -> str:
    """A size as PVE's task logs write it: `1.2 GiB`, `150.0 MiB`."""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if size >= 1024 ** power:
            return f"{size / 1024 ** power:.1f} {unit}"
    return f"{size:.0f} B"


def migration_progress_line(transferred: float, total: float, bytes_per_second: float) -> str:
    """A qemu migration's progress line, as PVE logs it while the VM's RAM is copied."""
    return (f"migration active, transferred {render_bytes(transferred)} of {render_bytes(total)} VM-state, "
            f"{render_bytes(bytes_per_second)}/s")


@dataclass
class Task:
    upid: str
    node: str
    pid: int
    pstart: int
    starttime: int
    type: str
    id: str
    user: str
    status: str = "running"
    exitstatus: str | None = None
    endtime: int | None = None
    log: list[str] = field(default_factory=list)
    bwlimit: int | None = None  # KiB/s, for migrations started with `bwlimit`

    def finish(self, at: float, exitstatus: str) -> None:
        self.status = "stopped"
        self.exitstatus = exitstatus
        self.endtime = int(at)
        self.log.append("TASK OK" if exitstatus == "OK" else f"TASK ERROR: {exitstatus}")

    def status_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
            "status": self.status,
        }
        if self.exitstatus is not None:
            entry["exitstatus"] = self.exitstatus
        return entry

    def list_entry(self) -> dict[str, object]:
        """The /nodes/{n}/tasks row: `status` is the exit status once the task has ended."""
        entry: dict[str, object] = {
            "upid": self.upid, "node": self.node, "pid": self.pid, "pstart": self.pstart,
            "starttime": self.starttime, "type": self.type, "id": self.id, "user": self.user,
        }
        if self.exitstatus is not None:
            entry["status"] = self.exitstatus
            entry["endtime"] = self.endtime
        return entry
