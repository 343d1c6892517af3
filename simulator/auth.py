"""Who is calling: API tokens and ticket login (cookie + CSRF), checked against the access model."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .access import AccessControl, AclEntry
from .failure import PveFailure
from .scenario import Credential


@dataclass(frozen=True)
class Caller:
    userid: str  # `user@realm` or, for tokens, `user@realm!name` (as it appears in UPIDs)
    access: AccessControl

    def can(self, path: str, privilege: str) -> bool:
        return privilege in self.access.privileges(self.userid, path)

    def uniform(self) -> bool:
        """The same privileges on every path as on `/` (see AccessControl.uniform)."""
        return self.access.uniform(self.userid)

    def permissions(self, path: str | None = None) -> dict[str, dict[str, int]]:
        """The /access/permissions answer: privileges per path (or for one path)."""
        return self.access.effective(self.userid, path)


@dataclass(frozen=True)
class Session:
    caller: Caller
    csrf: str


def shorthand_role(privileges: Iterable[str]) -> str:
    """The role a scenario's `privileges:`/`acl:` shorthand becomes (one per privilege set)."""
    return "sim:" + ",".join(sorted(privileges))


class Authenticator:
    def __init__(self, credentials: Iterable[Credential], roles: Mapping[str, Iterable[str]] = {},
                 acl: Iterable[AclEntry] = ()) -> None:
        self.access = AccessControl()
        for roleid, privileges in roles.items():
            self.access.add_role(roleid, privileges)
        for credential in credentials:
            self.add(credential)
        for entry in acl:
            self.access.grant(entry)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def add(self, credential: Credential) -> None:
        """A scenario or command-line credential; its shorthand ACL goes to the token and its user alike."""
        access = self.access
        if credential.name:
            access.add_user(credential.user)
            access.add_token(credential.user, credential.name, credential.secret or "", credential.privsep)
        else:
            access.add_user(credential.user, credential.secret)
        for path, privileges in credential.acl.items():
            role = shorthand_role(privileges)
            access.add_role(role, privileges)
            access.grant(AclEntry(path, credential.user, role))
            if credential.name:
                access.grant(AclEntry(path, credential.tokenid, role))

    def token_ids(self) -> list[str]:
        return sorted(f"{u}!{n}" for u, user in self.access.users.items() for n in user.tokens)

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
        token = self.access.token(tokenid)
        if token is None or not token.secret or not hmac.compare_digest(secret, token.secret):
            raise PveFailure(401, "Authentication failed!")
        return Caller(tokenid, self.access)

    def login(self, username: str, password: str) -> dict[str, object]:
        """POST /access/ticket; a valid ticket as the password renews it (proxmoxer does that)."""
        with self._lock:
            renewed = self._sessions.get(password)
            user = self.access.users.get(username)
            if renewed is not None and renewed.caller.userid == username:
                caller = renewed.caller
            elif user is not None and user.password and hmac.compare_digest(password, user.password):
                caller = Caller(username, self.access)
            else:
                raise PveFailure(401, "authentication failure")
            stamp = f"{int(time.time()):08X}"
            ticket = f"PVE:{username}:{stamp}::{secrets.token_urlsafe(48)}"
            csrf = f"{stamp}:{secrets.token_urlsafe(27)}"
            self._sessions[ticket] = Session(caller, csrf)
        vms = caller.permissions("/vms").get("/vms", {})
        return {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf,
                "cap": {"vms": {p: 1 for p in vms if p.startswith("VM.")}}}
