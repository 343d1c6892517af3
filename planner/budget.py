"""The one gate every non-mandatory move passes: what a plan may spend on balancing.

A move costs bytes to copy and estimated migration time, charged to the plan and to both of
its nodes, and counts once against `max_moves` (and, unless it relieves a node above a
high-water mark, against `max_moves_per_node` on both nodes). Mandatory moves are neither
charged nor refused: no budget cuts a repair or an evacuation short. `Context.commit` is the
only place a move is admitted; strategies and the search ask the same `refusal` first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .policy import Policy


@dataclass(frozen=True)
class Charge:
    """What one move spends."""

    copy_bytes: int
    seconds: float
    counted_per_node: bool  # False for relief: only cost limits it per node


class Budget:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.moves = 0
        self.copy_bytes = 0
        self.seconds = 0.0
        self.node_moves: dict[str, int] = defaultdict(int)
        self.node_bytes: dict[str, int] = defaultdict(int)
        self.node_seconds: dict[str, float] = defaultdict(float)

    def refusal(self, charge: Charge, source: str, target: str) -> str | None:
        """The limit this move would cross, as the policy key (and the node, for a per-node one); None: it fits."""
        return self._crossed(charge, (source, target))

    def spend(self, charge: Charge, source: str, target: str, sign: int = 1) -> None:
        """Record a move (`sign` -1 takes one back, as the search does)."""
        copied, seconds = sign * charge.copy_bytes, sign * charge.seconds
        self.moves += sign
        self.copy_bytes += copied
        self.seconds += seconds
        counted = sign if charge.counted_per_node else 0
        for node in (source, target):
            self.node_moves[node] += counted
            self.node_bytes[node] += copied
            self.node_seconds[node] += seconds

    def over(self) -> str | None:
        """The first limit the recorded moves cross (the search may pass through such states)."""
        return self._crossed(None, list(self.node_seconds))  # spend() enters every node it charges in all three

    def _crossed(self, charge: Charge | None, nodes: Iterable[str]) -> str | None:
        """The first limit crossed with `charge` added (None: as recorded), checking `nodes` for the per-node ones."""
        p = self.policy
        moves, copied, seconds = (0, 0, 0.0) if charge is None else (1, charge.copy_bytes, charge.seconds)
        counted = charge is None or charge.counted_per_node  # a relief move is not counted per node
        if self.moves + moves > p.max_moves:
            return "max_moves"
        if self.copy_bytes + copied > p.max_copy:
            return "max_copy"
        if self.seconds + seconds > p.max_migration_seconds:
            return "max_migration_seconds"
        for node in nodes:
            if counted and self.node_moves[node] + moves > p.max_moves_per_node:
                return f"max_moves_per_node ({node})"
            if self.node_bytes[node] + copied > p.max_copy_per_node:
                return f"max_copy_per_node ({node})"
            if self.node_seconds[node] + seconds > p.max_migration_seconds_per_node:
                return f"max_migration_seconds_per_node ({node})"
        return None
