"""What the controller's HTTP server shows and does, as the loop provides it.

Kept apart from controller/server.py so that the loop, `plan` and `apply` never load the HTTP
framework: only `run` serving HTTP does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.config import ApiSettings
from pveapi.settings import Secret

if TYPE_CHECKING:
    from controller.operations import Operations


@dataclass(frozen=True)
class Endpoints:
    """What the server shows and does; the loop provides these."""

    metrics: Callable[[], bytes]
    health: Callable[[], tuple[bool, Mapping[str, Any]]]
    plan: Callable[[], Mapping[str, Any] | None]
    trigger: Callable[[str], None]  # start a cycle now; the argument says why
    webhook_token: Secret | None
    operations: Operations  # the /api/v1 reads and actions
    api: ApiSettings  # its tokens and CORS origins
    count_action: Callable[[str, str], None]  # (action, result) into /metrics
