"""The API's path table: `@route("GET", "/nodes/{node}/status")` on a view function.

Proxying, permissions and parameters come from Proxmox VE's schema (apischema.py), not from here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .auth import Caller

if TYPE_CHECKING:
    from .api import PveApi

# Any segment matches {vmid}, as on PVE: a non-integer one is then a 400 from the schema check.
_PARAM_PATTERNS = {"kind": r"qemu|lxc"}


@dataclass
class Call:
    api: PveApi
    caller: Caller
    params: dict[str, str]
    now: float
    method: str
    path: str


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m.group(1)}>{_PARAM_PATTERNS.get(m.group(1), '[^/]+')})", template)

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        ROUTES.append(Route(method, template, re.compile(f"^{regex}$"), handler))
        return handler

    return register


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for candidate in ROUTES:
        if candidate.method == method:
            found = candidate.pattern.match(path)
            if found:
                return candidate, found.groupdict()
    return None
