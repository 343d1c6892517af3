"""Planning strategies, one job each, run in order on one shared `Context`.

Like the Kubernetes descheduler's plugins: every strategy looks at the current state and
commits moves through the context, which keeps every step feasible. Mandatory strategies
(evacuation, hard-rule repair) run first; soft-rule repair next; balancing last.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import Context
from .balance import balance
from .evacuate import evacuate
from .repair import repair_affinity, repair_anti_affinity, repair_node_affinity
from .soft import repair_soft

Strategy = Callable[[Context], None]

STRATEGIES: tuple[Strategy, ...] = (
    evacuate,
    repair_node_affinity,
    repair_anti_affinity,
    repair_affinity,
    repair_soft,
    balance,
)

__all__ = ["STRATEGIES", "Context", "Strategy"]
