"""Planning strategies, one job each, run in order on one shared `Context`.

Like the Kubernetes descheduler's plugins: every strategy looks at the current state and
commits moves through the context, which keeps every step feasible. Mandatory strategies
(evacuation, rule repair) run first; balancing last.
"""

from __future__ import annotations

from collections.abc import Callable

from .balance import balance
from . import refine
from .context import Context
from .evacuate import evacuate
from .repair import repair_affinity, repair_anti_affinity, repair_node_affinity

Strategy = Callable[[Context], None]

MANDATORY: tuple[Strategy, ...] = (
    evacuate,
    repair_node_affinity,
    repair_anti_affinity,
    repair_affinity,
)
STRATEGIES: tuple[Strategy, ...] = (*MANDATORY, balance)

__all__ = ["MANDATORY", "STRATEGIES", "Context", "Strategy", "refine"]
