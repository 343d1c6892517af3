"""The errors pvebalance reports: every Proxmox failure becomes one `ApiError`.

Only types live here (no I/O imports, so the pure planner may use them); the translation from
what proxmoxer and requests raise is in `translate.py`. Callers above this layer only ever see
`ApiError`, whose `kind` says what a user can do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class PvebalanceError(Exception):
    """Base of every error pvebalance reports to a user as one clear line."""

    def __str__(self) -> str:
        # One line whatever the message quotes: a key or value from a file may hold line breaks.
        return super().__str__().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(PvebalanceError):
    """A configuration, rules or scenario file (or value) is wrong; the message says how."""


class ErrorKind(str, Enum):
    AUTH = "auth"  # 401: wrong token or password
    PERMISSION = "permission"  # 403: the token lacks a privilege
    PARAMETER = "parameter"  # 400: the request was refused as malformed
    REFUSED = "refused"  # 500: the handler refused (locked guest, no quorum, ...)
    UNREACHABLE = "unreachable"  # 595/596 or network: a node or the API could not be reached
    TIMEOUT = "timeout"  # the call did not answer within its timeout
    NOT_IMPLEMENTED = "not_implemented"  # 501: unknown path or method
    BAD_ANSWER = "bad_answer"  # the answer was not the shape the API documents


@dataclass
class ApiError(PvebalanceError):
    kind: ErrorKind
    endpoint: str
    message: str
    status: int | None = None
    errors: dict[str, str] | None = None
    hint: bool = True  # add the kind's usual advice; off when the message already says what to do

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        detail = self.message
        if self.errors:
            detail += " (" + "; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) + ")"
        hint = _HINTS.get(self.kind, "") if self.hint else ""
        return f"Proxmox API {self.endpoint}: {status}{detail}{hint}"


_HINTS = {
    ErrorKind.AUTH: " - check the user, token name and token secret",
    ErrorKind.PERMISSION: " - grant the token the named privilege (see docs/proxmox-permissions.md)",
    ErrorKind.UNREACHABLE: " - check the host, port and that the node is up",
    ErrorKind.TIMEOUT: " - the API did not answer in time; raise `timeout` or check the node",
}
