"""Who is calling: API tokens, ticket login (cookie + CSRF) and privilege checks on ACL paths."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from .failure import PveFailure
from .scenario import Credential


@dataclass(frozen=True)
class Caller:
    userid: str  # `user@realm` or, for tokens, `user@realm!name` (as it appears in UPIDs)
    acl: Mapping[str, tuple[str, ...]]

    def can(self, path: str, privilege: str) -> bool:
        """ACLs propagate down the tree: a privilege on `/vms` covers `/vms/100`."""
        for acl_path, privileges in self.acl.items():
            if privilege in privileges and (
                acl_path == "/" or path == acl_path or path.startswith(acl_path.rstrip("/") + "/")
            ):
                return True
        return False

    def require(self, path: str, privilege: str) -> None:
        if not self.can(path, privilege):
            raise PveFailure(403, f"Permission check failed ({path}, {privilege})")

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """The /access/permissions answer: privileges per ACL path (or for one path)."""
        if path is not None:
            privileges = {p for acl_path in self.acl for p in self.acl[acl_path] if self.can(path, p)}
            return {path: {p: 1 for p in sorted(privileges)}}
        return {acl_path: {p: 1 for p in privileges} for acl_path, privileges in self.acl.items()}


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: str


class Authenticator:
    def __init__(self, credentials: tuple[Credential, ...]) -> None:
        self._tokens = {c.tokenid: c for c in credentials if c.name}
        self._users = {c.user: c for c in credentials if not c.name}
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def add(self, credential: Credential) -> None:
        with self._lock:
            (self._tokens if credential.name else self._users)[credential.tokenid] = credential

    def token_ids(self) -> list[str]:
        return sorted(self._tokens)

    def authenticate(self, headers: Mapping[str, str], cookies: Mapping[str, str], method: str) -> Caller:
        header = headers.get("Authorization", "")
        if header.startswith("PVEAPIToken"):
            return self._token(header[len("PVEAPIToken"):].lstrip("= "))
        ticket = cookies.get("PVEAuthCookie")
        if not ticket:
            raise PveFailure(401, "No ticket")
        session = self._sessions.get(ticket)
        if session is None:
            raise PveFailure(401, "Authentication failed!")
        if method != "GET" and not hmac.compare_digest(headers.get("CSRFPreventionToken", ""), session.csrf):
            raise PveFailure(401, "Permission denied - invalid csrf token")
        return session.caller

    def _token(self, value: str) -> Caller:
        tokenid, _, secret = value.partition("=")
        credential = self._tokens.get(tokenid)
        if credential is None or not hmac.compare_digest(secret, credential.secret):
            raise PveFailure(401, "Authentication failed!")
        return Caller(credential.tokenid, credential.acl)

    def login(self, username: str, password: str) -> dict[str, object]:
        """POST /access/ticket; a valid ticket as the password renews it (proxmoxer does that)."""
        with self._lock:
            renewed = self._sessions.get(password)
            credential = self._users.get(username)
            if renewed is not None and renewed.caller.userid == username:
                caller = renewed.caller
            elif credential is not None and hmac.compare_digest(password, credential.secret):
                caller = Caller(credential.user, credential.acl)
            else:
                raise PveFailure(401, "authentication failure")
            stamp = f"{int(time.time()):08X}"
            ticket = f"PVE:{username}:{stamp}::{secrets.token_urlsafe(48)}"
            csrf = f"{stamp}:{secrets.token_urlsafe(27)}"
            self._sessions[ticket] = Session(caller, csrf)
        return {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf,
                "cap": {"vms": {p: 1 for p in caller.acl.get("/", ()) if p.startswith("VM.")}}}
