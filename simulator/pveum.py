"""A small `pveum`: the user, token, role and ACL commands our docs give, applied to the simulator.

`POST /_sim/pveum {"command": "pveum acl modify / --tokens 'u@pve!t' --roles PVEAuditor"}`.
Options as PVE's CLI takes them: `-opt` or `--opt`, `--opt=value`, any unique prefix
(Getopt::Long's abbreviations, so `-token`, `-role` work). `aclmod`, `acldel`, `useradd` and
`roleadd` are pveum's old aliases.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Mapping
from typing import Any

from pveapi.errors import ConfigError

from .access import PRIVILEGES, AccessControl, AclEntry, normalize_path
from .scenario import _TOKEN_NAME, _USERID

_ALIASES = {"aclmod": ["acl", "modify"], "acldel": ["acl", "delete"], "useradd": ["user", "add"],
            "roleadd": ["role", "add"]}
# command -> (positional argument names, option names)
_COMMANDS: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {
    ("user", "add"): (("userid",), ("comment", "password", "email", "enable", "expire", "firstname", "lastname",
                                    "groups", "keys")),
    ("user", "token", "add"): (("userid", "tokenid"), ("privsep", "comment", "expire")),
    ("role", "add"): (("roleid",), ("privs",)),
    ("acl", "modify"): (("path",), ("roles", "users", "tokens", "groups", "propagate")),
    ("acl", "delete"): (("path",), ("roles", "users", "tokens", "groups")),
}


def run(access: AccessControl, command: str) -> Any:
    """Apply one pveum command line; returns what pveum prints (as data), or raises ConfigError."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"pveum: cannot parse the command line: {exc}") from None
    if words[:1] == ["pveum"]:
        words = words[1:]
    if words[:1] and words[0] in _ALIASES:
        words = _ALIASES[words[0]] + words[1:]
    name = next((c for c in sorted(_COMMANDS, key=len, reverse=True) if tuple(words[:len(c)]) == c), None)
    if name is None:
        known = ", ".join(" ".join(c) for c in _COMMANDS)
        raise ConfigError(f"pveum: unsupported command {' '.join(words[:3])!r}; the simulator knows: {known}")
    positional, options = _COMMANDS[name]
    args, opts = _parse(words[len(name):], positional, options, " ".join(name))
    with access.lock:
        return _apply(access, name, args, opts)


def _parse(words: list[str], positional: tuple[str, ...], options: tuple[str, ...],
           command: str) -> tuple[dict[str, str], dict[str, str]]:
    args: list[str] = []
    opts: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-") and len(word) > 1 and not word.lstrip("-")[:1].isdigit():
            key, eq, value = word.lstrip("-").partition("=")
            matches = [o for o in options if o == key] or [o for o in options if o.startswith(key)]
            if len(matches) != 1:
                raise ConfigError(f"pveum {command}: unknown option '{word}' (options: {', '.join(options)})")
            if not eq:
                i += 1
                if i >= len(words):
                    raise ConfigError(f"pveum {command}: option '{word}' needs a value")
                value = words[i]
            opts[matches[0]] = value
        else:
            args.append(word)
        i += 1
    if len(args) != len(positional):
        raise ConfigError(f"pveum {command}: expected {' '.join('<' + p + '>' for p in positional)}, got {args!r}")
    return dict(zip(positional, args, strict=False)), opts


def _apply(access: AccessControl, name: tuple[str, ...], args: Mapping[str, str], opts: Mapping[str, str]) -> Any:
    if name == ("user", "add"):
        userid = _userid(args["userid"])
        if userid in access.users:
            raise ConfigError(f"pveum user add: create user failed: user '{userid}' already exists")
        access.add_user(userid, opts.get("password"))
        return None
    if name == ("user", "token", "add"):
        userid, tokenid = _userid(args["userid"]), args["tokenid"]
        if userid not in access.users:
            raise ConfigError(f"pveum user token add: no such user ('{userid}')")
        if not _TOKEN_NAME.match(tokenid):
            raise ConfigError(f"pveum user token add: invalid token name '{tokenid}'")
        if access.token(f"{userid}!{tokenid}") is not None:
            raise ConfigError("pveum user token add: Token already exists.")
        privsep = _flag(opts.get("privsep", "1"), "privsep")
        value = str(uuid.uuid4())
        access.add_token(userid, tokenid, value, privsep)
        return {"full-tokenid": f"{userid}!{tokenid}", "info": {"privsep": int(privsep)}, "value": value}
    if name == ("role", "add"):
        roleid = args["roleid"]
        if roleid in access.roles:
            raise ConfigError(f"pveum role add: role '{roleid}' already exists")
        privileges = [p for p in opts.get("privs", "").replace(";", ",").replace(" ", ",").split(",") if p]
        unknown = sorted(set(privileges) - PRIVILEGES)
        if unknown:
            raise ConfigError(f"pveum role add: invalid privilege '{unknown[0]}'")
        access.add_role(roleid, privileges)
        return None
    path = normalize_path(args["path"])
    roles = [r for r in opts.get("roles", "").split(",") if r]
    if not roles:
        raise ConfigError("pveum acl: --roles is required")
    for role in roles:
        if role not in access.roles:
            raise ConfigError(f"pveum acl: role '{role}' does not exist")
    if opts.get("groups"):
        raise ConfigError("pveum acl: groups are not simulated; grant --users or --tokens")
    ugids = [_userid(u) for u in opts.get("users", "").split(",") if u]
    for tokenid in (t for t in opts.get("tokens", "").split(",") if t):
        if access.token(tokenid) is None:
            raise ConfigError(f"pveum acl: no such token '{tokenid}'")
        ugids.append(tokenid)
    for userid in ugids:
        if "!" not in userid and userid not in access.users:
            raise ConfigError(f"pveum acl: no such user '{userid}'")
    if not ugids:
        raise ConfigError("pveum acl: name --users or --tokens")
    propagate = _flag(opts.get("propagate", "1"), "propagate")
    for ugid in ugids:
        for role in roles:
            if name == ("acl", "modify"):
                access.grant(AclEntry(path, ugid, role, propagate))
            else:
                access.revoke(path, ugid, role)
    return None


def _userid(text: str) -> str:
    if not _USERID.match(text):
        raise ConfigError(f"pveum: invalid user id '{text}' (NAME@REALM, e.g. pvebalance@pve)")
    return text


def _flag(text: str, key: str) -> bool:
    if text not in ("0", "1"):
        raise ConfigError(f"pveum: --{key} must be 0 or 1, got {text!r}")
    return text == "1"
