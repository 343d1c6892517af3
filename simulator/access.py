"""Users, API tokens, roles and ACLs as pve-access-control keeps them (user.cfg), and what they grant.

A privilege on a path comes from the ACL entries on that path or, when they propagate, on a
parent; the deepest path with entries for the user (or token) wins, as PVE::AccessControl does.
`root@pam` has every privilege. A token with privilege separation has only what both it and
its user have on the path; without it, exactly what its user has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

# PVE 9's privileges and built-in roles (pve-access-control PVE/AccessControl.pm).
_VM_PRIVILEGES = (
    "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
    "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options",
    "VM.Console", "VM.GuestAgent.Audit", "VM.GuestAgent.FileRead", "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite", "VM.GuestAgent.Unrestricted", "VM.Migrate", "VM.PowerMgmt", "VM.Replicate",
    "VM.Snapshot", "VM.Snapshot.Rollback",
)
PRIVILEGES = frozenset(_VM_PRIVILEGES + (
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify", "Pool.Allocate",
    "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit", "SDN.Use",
    "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
    "User.Modify",
))
BUILTIN_ROLES: dict[str, frozenset[str]] = {
    "Administrator": PRIVILEGES,
    "NoAccess": frozenset(),
    "PVEAuditor": frozenset({"Datastore.Audit", "Mapping.Audit", "Pool.Audit", "SDN.Audit", "Sys.Audit", "VM.Audit",
                             "VM.GuestAgent.Audit"}),
    "PVEPoolAdmin": frozenset({"Pool.Allocate", "Pool.Audit"}),
    "PVEPoolUser": frozenset({"Pool.Audit"}),
    "PVEDatastoreUser": frozenset({"Datastore.AllocateSpace", "Datastore.Audit"}),
    "PVEDatastoreAdmin": frozenset({"Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate",
                                    "Datastore.Audit"}),
    "PVEVMAdmin": frozenset(_VM_PRIVILEGES),
    "PVEVMUser": frozenset({"VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.Cloudinit",
                            "VM.Console", "VM.GuestAgent.Audit", "VM.PowerMgmt"}),
    "PVESysAdmin": frozenset({"Permissions.Modify", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify",
                              "Sys.PowerMgmt", "Sys.Syslog", "Sys.AccessNetwork"}),
    "PVEAdmin": PRIVILEGES - {"Permissions.Modify", "Realm.Allocate", "Sys.Modify", "User.Modify"},
}
SUPERUSER = "root@pam"
# Paths /access/permissions reports besides those with ACL entries (PVE's get_effective_permissions).
_REPORTED = ("/", "/access", "/access/groups", "/mapping", "/nodes", "/pool", "/sdn", "/storage", "/vms")


@dataclass
class Token:
    secret: str
    privsep: bool = True


@dataclass
class User:
    password: str | None = None
    tokens: dict[str, Token] = field(default_factory=dict)


@dataclass(frozen=True)
class AclEntry:
    path: str
    ugid: str  # a user id, or a token id `user@realm!name`
    role: str
    propagate: bool = True


def normalize_path(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p)


class AccessControl:
    """The user.cfg of the simulated cluster; changed at run time by the pveum admin command."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.roles: dict[str, frozenset[str]] = dict(BUILTIN_ROLES)
        self.acl: list[AclEntry] = []
        self.lock = threading.RLock()
        self._memo: dict[tuple[str, str], frozenset[str]] = {}
        self._uniform: dict[str, bool] = {}

    def changed(self) -> None:
        self._memo.clear()
        self._uniform.clear()

    def token(self, tokenid: str) -> Token | None:
        user, _, name = tokenid.partition("!")
        return self.users[user].tokens.get(name) if user in self.users else None

    def privileges(self, ugid: str, path: str) -> frozenset[str]:
        """What `ugid` (a user or a token id) may do on `path`, memoized until user.cfg changes."""
        key = (ugid, path)
        found = self._memo.get(key)
        if found is None:
            with self.lock:
                found = self._memo[key] = self._privileges(ugid, normalize_path(path))
        return found

    def uniform(self, ugid: str) -> bool:
        """Whether `ugid` has on every path exactly what it has on `/`: no ACL entry that counts
        for it (its user's, and a privsep token's own) sits deeper or stops propagating. Lets
        /cluster/resources skip the per-entry checks, memoized until user.cfg changes."""
        found = self._uniform.get(ugid)
        if found is None:
            user, bang, name = ugid.partition("!")
            token = self.token(ugid) if bang else None
            counted = {ugid} if token is not None and token.privsep else set()
            if user != SUPERUSER:
                counted.add(user)
            with self.lock:
                found = self._uniform[ugid] = all(e.path == "/" and e.propagate for e in self.acl if e.ugid in counted)
        return found

    def _privileges(self, ugid: str, path: str) -> frozenset[str]:
        user, bang, name = ugid.partition("!")
        if user not in self.users:
            return frozenset()
        own = PRIVILEGES if user == SUPERUSER else self._granted(user, path)
        if not bang:
            return own
        token = self.users[user].tokens.get(name)
        if token is None:
            return frozenset()
        return own & self._granted(ugid, path) if token.privsep else own

    def _granted(self, ugid: str, path: str) -> frozenset[str]:
        parts = path.strip("/").split("/") if path != "/" else []
        roles: set[str] = set()
        for depth in range(len(parts) + 1):
            here = "/" + "/".join(parts[:depth])
            found = {e.role for e in self.acl if e.ugid == ugid and e.path == here
                     and (e.propagate or depth == len(parts))}
            if found:
                roles = found
        return frozenset().union(*(self.roles.get(r, frozenset()) for r in roles))

    def effective(self, ugid: str, path: str | None = None) -> dict[str, dict[str, int]]:
        """The /access/permissions answer: privileges per path (propagated ones as 1)."""
        user = ugid.partition("!")[0]
        paths = [normalize_path(path)] if path is not None else sorted(
            set(_REPORTED) | {e.path for e in self.acl if e.ugid in (ugid, user)})
        answer = {}
        for p in paths:
            privileges = self.privileges(ugid, p)
            if privileges or path is not None:
                answer[p] = {priv: 1 for priv in sorted(privileges)}
        return answer

    # -- changes (scenario loading and pveum) -------------------------------------------
    def add_user(self, userid: str, password: str | None = None) -> None:
        with self.lock:
            self.users.setdefault(userid, User()).password = password or self.users.get(userid, User()).password
            self.changed()

    def add_token(self, userid: str, name: str, secret: str, privsep: bool) -> None:
        with self.lock:
            self.users.setdefault(userid, User()).tokens[name] = Token(secret, privsep)
            self.changed()

    def add_role(self, roleid: str, privileges: Iterable[str]) -> None:
        with self.lock:
            self.roles[roleid] = frozenset(privileges)
            self.changed()

    def grant(self, entry: AclEntry) -> None:
        with self.lock:
            self.acl = [e for e in self.acl if (e.path, e.ugid, e.role) != (entry.path, entry.ugid, entry.role)]
            self.acl.append(entry)
            self.changed()

    def revoke(self, path: str, ugid: str, role: str) -> None:
        with self.lock:
            self.acl = [e for e in self.acl if (e.path, e.ugid, e.role) != (path, ugid, role)]
            self.changed()
