"""The committed Grafana dashboards, read as Grafana reads them, for the stack tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "grafana" / "dashboards"
_VARIABLE = re.compile(r"\$([A-Za-z_]\w*)|\$\{([A-Za-z_]\w*)\}|\[\[([A-Za-z_]\w*)\]\]")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str
    instant: bool

    def variables(self) -> set[str]:
        return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(self.expr)}


def load_all() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries() -> Iterator[PanelQuery]:
    for name, board in load_all().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                yield PanelQuery(name, panel["title"], target["expr"], bool(target.get("instant")))
