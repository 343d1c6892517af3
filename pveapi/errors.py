"""Every Proxmox error, translated in one place.

proxmoxer raises `ResourceException` for HTTP >= 400 (with the reason phrase as `content`)
and lets `requests` exceptions through for network failures. Callers above this layer only
ever see `ApiError`, whose `kind` says what a user can do about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import requests
from proxmoxer.core import AuthenticationError, ResourceException


class PvebalanceError(Exception):
    """Base of every error pvebalance reports to a user as one clear line."""


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

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        detail = self.message
        if self.errors:
            detail += " (" + "; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) + ")"
        return f"Proxmox API {self.endpoint}: {status}{detail}{_HINTS.get(self.kind, '')}"


_HINTS = {
    ErrorKind.AUTH: " - check the user, token name and token secret",
    ErrorKind.PERMISSION: " - grant the token the named privilege (see docs/proxmox-permissions.md)",
    ErrorKind.UNREACHABLE: " - check the host, port and that the node is up",
    ErrorKind.TIMEOUT: " - the API did not answer in time; raise `timeout` or check the node",
}


def _kind_for_status(status: int) -> ErrorKind:
    if status == 401:
        return ErrorKind.AUTH
    if status == 403:
        return ErrorKind.PERMISSION
    if status == 400:
        return ErrorKind.PARAMETER
    if status == 501:
        return ErrorKind.NOT_IMPLEMENTED
    if status in (595, 596):
        return ErrorKind.UNREACHABLE
    return ErrorKind.REFUSED


def translate(exc: Exception, endpoint: str) -> ApiError:
    """Turn whatever proxmoxer or requests raised into an `ApiError` for `endpoint`.

    The message never includes request headers or URLs with credentials: only the reason
    phrase Proxmox sent, or the class of network failure.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ResourceException):
        reason = (exc.content or exc.status_message or "").strip().splitlines()
        return ApiError(
            kind=_kind_for_status(exc.status_code),
            endpoint=endpoint,
            message=reason[0] if reason else f"HTTP {exc.status_code}",
            status=exc.status_code,
            errors=exc.errors if isinstance(exc.errors, dict) else None,
        )
    if isinstance(exc, AuthenticationError):
        # Raised by the ticket login (password auth); its text names the URL, never the password,
        # but the status line is all a user needs.
        return ApiError(ErrorKind.AUTH, endpoint, "Authentication failed!", status=401)
    if isinstance(exc, requests.Timeout):
        return ApiError(ErrorKind.TIMEOUT, endpoint, "no answer before the timeout")
    if isinstance(exc, requests.exceptions.SSLError):
        return ApiError(
            ErrorKind.UNREACHABLE,
            endpoint,
            "TLS certificate verification failed - install the cluster's CA or set verify_ssl: false",
        )
    if isinstance(exc, requests.ConnectionError):
        return ApiError(ErrorKind.UNREACHABLE, endpoint, "connection failed")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return ApiError(ErrorKind.BAD_ANSWER, endpoint, f"unexpected answer: {exc}")
    raise exc
