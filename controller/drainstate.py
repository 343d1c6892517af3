"""Which nodes are drained, and which guests each one gave away: `<state file>.drain`.

Small JSON replaced atomically, next to the loop's state file, so a drain survives restarts
of `apply` and `run`. While a node is drained every plan treats it as a maintenance node
(`drain_rules`): it receives nothing, and what lands on it anyway is moved off again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controller.jsonfile import read_json, write_json
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
        # Refused rather than forgotten when unreadable: guests could be placed on a node under maintenance.
        data = read_json(path, "drain state", "drained nodes are then forgotten")
        if data is None:
            return cls(path)
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
        nodes = {
            node: {"since": since, "guests": {str(v): at for v, at in sorted(self.came_from.get(node, {}).items())}}
            for node, since in sorted(self.since.items())
        }
        write_json(self.path, {"version": 1, "nodes": nodes}, "drain state")

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
