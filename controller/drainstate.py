"""Which nodes are drained, and which guests each one gave away: `<state file>.drain`.

Small JSON replaced atomically, next to the loop's state file, so a drain survives restarts
of `apply` and `run`. While a node is drained every plan treats it as a maintenance node
(`drain_rules`): it receives nothing, and what lands on it anyway is moved off again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from planner.rules import MaintenanceRule, RuleSet
from pveapi.errors import ConfigError

DRAIN_SOURCE = "pvebalance drain"


def drain_path(state_file: Path) -> Path:
    return state_file.with_name(state_file.name + ".drain")


@dataclass
class DrainState:
    path: Path
    since: dict[str, float] = field(default_factory=dict)  # drained node -> when its drain began
    came_from: dict[str, dict[int, float]] = field(default_factory=dict)  # node -> {vmid: when it left}

    @classmethod
    def load(cls, state_file: Path) -> DrainState:
        path = drain_path(state_file)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            # Refuse rather than forget a drain: guests could be placed on a node under maintenance.
            raise ConfigError(f"drain state {path}: unreadable ({exc}); fix or remove it (drained nodes are then forgotten)") from None
        try:
            nodes = dict(data["nodes"])
            return cls(
                path,
                {str(n): float(v["since"]) for n, v in nodes.items()},
                {str(n): {int(k): float(at) for k, at in dict(v.get("guests", {})).items()} for n, v in nodes.items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigError(f"drain state {path}: not a pvebalance drain file; fix or remove it") from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        nodes = {
            node: {"since": since, "guests": {str(v): at for v, at in sorted(self.came_from.get(node, {}).items())}}
            for node, since in sorted(self.since.items())
        }
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps({"version": 1, "nodes": nodes}, indent=1) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # on disk before it replaces the old file: a crash leaves one or the other
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power loss
        finally:
            os.close(directory)

    @property
    def drained(self) -> frozenset[str]:
        return frozenset(self.since)

    def begin(self, node: str, at: float) -> None:
        self.since.setdefault(node, at)
        self.came_from.setdefault(node, {})
        self.save()

    def left(self, node: str, vmid: int, at: float) -> None:
        self.came_from.setdefault(node, {}).setdefault(vmid, at)
        self.save()

    def end(self, node: str) -> None:
        self.since.pop(node, None)
        self.came_from.pop(node, None)
        self.save()


def drain_rules(drained: frozenset[str]) -> RuleSet:
    """Drained nodes as maintenance rules: every plan evacuates them and places nothing there."""
    if not drained:
        return RuleSet()
    return RuleSet(maintenance=(MaintenanceRule(drained, DRAIN_SOURCE),))
