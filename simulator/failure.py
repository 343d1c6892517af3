"""An API answer that is an error: status, reason phrase and the body PVE sends with it."""

from __future__ import annotations

import json

# Statuses whose body is empty on a real PVE: auth failures and proxy failures.
EMPTY_BODY = (401, 595, 596)


class PveFailure(Exception):
    def __init__(self, status: int, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors

    def body(self) -> bytes:
        if self.status in EMPTY_BODY:
            return b""
        payload: dict[str, object] = {"data": None, "message": self.message + "\n"}
        if self.errors:
            payload["errors"] = self.errors
        return json.dumps(payload).encode()


def param_error(errors: dict[str, str]) -> PveFailure:
    return PveFailure(400, "Parameter verification failed.", errors)


def not_implemented(method: str, path: str) -> PveFailure:
    return PveFailure(501, f"Method '{method} {path}' not implemented")


def unreachable(status: int = 595) -> PveFailure:
    return PveFailure(status, "No route to host" if status == 595 else "Connection timed out")
