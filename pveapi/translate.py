"""Every Proxmox error, translated in one place.

proxmoxer raises `ResourceException` for HTTP >= 400 (with the reason phrase as `content`)
and lets `requests` exceptions through for network failures; both become an `ApiError`.
"""

from __future__ import annotations

import requests
from proxmoxer.core import AuthenticationError, ResourceException

from .errors import ApiError, ErrorKind


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
            hint=False,  # the host answered: "check the host, port and that the node is up" would mislead
        )
    if isinstance(exc, requests.ConnectionError):
        return ApiError(ErrorKind.UNREACHABLE, endpoint, "connection failed")
    if isinstance(exc, requests.RequestException):  # an answer cut off or undecodable, a redirect loop
        return ApiError(ErrorKind.BAD_ANSWER, endpoint, f"the answer could not be read ({type(exc).__name__})")
    if isinstance(exc, OSError):
        # requests raises a bare OSError when the CA bundle cannot be read (the file verify_ssl
        # names, or the system's, removed or replaced while we run): nothing was sent.
        return ApiError(ErrorKind.UNREACHABLE, endpoint,
                        f"the CA bundle cannot be read ({exc.strerror or exc}) - check the file verify_ssl names "
                        "exists and is readable", hint=False)
    if isinstance(exc, RecursionError):  # JSON nested deeper than the decoder follows
        return ApiError(ErrorKind.BAD_ANSWER, endpoint, "the answer is nested too deeply to be a Proxmox answer")
    if isinstance(exc, (ValueError, KeyError, TypeError)):
        return ApiError(ErrorKind.BAD_ANSWER, endpoint, f"unexpected answer: {exc}")
    raise exc
