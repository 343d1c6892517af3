"""Proxmox VE's own API schema, trimmed to the endpoints served: parameter and permission checks, proxying.

The copy in `schema/` is derived by scripts/trim-pve-schema.py from pve-docs' API viewer data.
Checks run in PVE's order (pve-http-server: proxy to `proxyto`, then the method's permission
check, then `PVE::JSONSchema::validate`, then the handler) and answer with PVE's texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from .failure import PveFailure, param_error

SCHEMA_VERSION = "9.1.3"
UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"
# What PVE 8 lacks of the 9.x schema: whole endpoints (501) and single parameters (400 as unknown).
PVE9_ENDPOINTS = {("GET", "/nodes/{node}/lxc/{vmid}/migrate"), ("GET", "/cluster/ha/rules")}
PVE9_PARAMETERS = {("POST", "/nodes/{node}/qemu/{vmid}/migrate"): {"with-conntrack-state"}}

_INTEGER = re.compile(r"^-?\d+$")
_NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")
_NODE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?$")
_STORAGE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)
_POOL = re.compile(r"^[A-Za-z0-9.\-_]+(?:/[A-Za-z0-9.\-_]+)*$")
_LIST_SPLIT = re.compile(r"[,; ]+")


def _pool(value: str) -> str | None:
    if len(value.split("/")) > 3:
        return f"pool name '{value}' nested too deeply (max levels = 3)"
    return None if _POOL.match(value) else f"pool name '{value}' contains invalid characters"


# format -> a check returning PVE's complaint (after "invalid format - ") or None; unlisted formats pass.
_FORMATS: dict[str, Callable[[str], str | None]] = {
    "pve-node": lambda v: None if _NODE.match(v) else "value does not look like a valid node name",
    "pve-vmid": lambda v: None if v.isdigit() else "value does not look like a valid VM ID",
    "pve-storage-id": lambda v: None if _STORAGE.match(v) else f"storage ID '{v}' contains illegal characters",
    "pve-configid": lambda v: None if re.match(r"^[a-z][a-z0-9_-]+$", v, re.IGNORECASE) else f"invalid configuration ID '{v}'",
    "pve-poolid": _pool,
    "pve-ha-resource-or-vm-id": lambda v: None if re.match(r"^(?:(?:vm|ct):)?\d+$", v) else f"unable to parse HA resource id '{v}'",
    "CIDR": lambda v: None if re.match(r"^[0-9a-fA-F.:]+/\d{1,3}$", v) else "value does not look like a valid CIDR network",
}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the schema's path, e.g. /nodes/{node}/qemu/{vmid}/migrate
    properties: Mapping[str, Mapping[str, Any]]
    closed: bool  # additionalProperties: 0
    permissions: Mapping[str, Any]
    proxyto: str | None
    returns: Mapping[str, Any]


@lru_cache(maxsize=1)
def endpoints() -> dict[tuple[str, str], Endpoint]:
    text = resources.files(__package__).joinpath(f"schema/pve-{SCHEMA_VERSION}-trimmed.json").read_text("utf-8")
    table = {}
    for path, methods in json.loads(text)["paths"].items():
        for method, info in methods.items():
            parameters = info.get("parameters") or {}
            table[(method, path)] = Endpoint(method, path, parameters.get("properties") or {},
                                             not parameters.get("additionalProperties", 1), info.get("permissions") or {},
                                             info.get("proxyto"), info.get("returns") or {})
    return table


def schema_path(template: str, args: Mapping[str, str]) -> str:
    """The simulator's route template with `{kind}` filled in, as the schema names the path."""
    return template.replace("{kind}", args["kind"]) if "{kind}" in template else template


def endpoint(method: str, template: str, args: Mapping[str, str]) -> Endpoint:
    return endpoints()[(method, schema_path(template, args))]


def check_parameters(found: Endpoint, params: Mapping[str, str], major: int) -> None:
    """PVE::JSONSchema::validate on the merged path and request parameters: 400 with every problem."""
    errors: dict[str, str] = {}
    absent = PVE9_PARAMETERS.get((found.method, found.path), set()) if major < 9 else set()
    for name, prop in found.properties.items():
        if name in absent:
            continue
        value = params.get(name)
        if value is None:
            if not prop.get("optional"):
                errors[name] = MISSING
            continue
        problem = _check_value(value, prop)
        if problem is None and prop.get("requires") and prop["requires"] not in params:
            problem = f"missing property - '{prop['requires']}'"
        if problem:
            errors[name] = problem
    if found.closed:
        errors.update({k: UNKNOWN for k in params if k not in found.properties or k in absent})
    if errors:
        raise param_error(errors)


def _check_value(value: str, prop: Mapping[str, Any]) -> str | None:
    kind = prop.get("type", "string")
    if kind == "boolean" and value not in ("0", "1"):
        return f"type check ('boolean') failed - got '{value}'"
    if kind in ("integer", "number"):
        if not (_INTEGER if kind == "integer" else _NUMBER).match(value):
            return f"type check ('{kind}') failed - got '{value}'"
        if prop.get("minimum") is not None and float(value) < float(prop["minimum"]):
            return f"value must have a minimum value of {prop['minimum']}"
        if prop.get("maximum") is not None and float(value) > float(prop["maximum"]):
            return f"value must have a maximum value of {prop['maximum']}"
    if "enum" in prop and value not in prop["enum"]:
        return f"value '{value}' does not have a value in the enumeration '{', '.join(prop['enum'])}'"
    if prop.get("maxLength") is not None and len(value) > int(prop["maxLength"]):
        return f"value may only be {prop['maxLength']} characters long"
    if prop.get("pattern") and not re.match(_perl_pattern(prop["pattern"]), value):
        return "value does not match the regex pattern"
    fmt = prop.get("format")
    if isinstance(fmt, str):
        base, listed = (fmt[:-5], True) if fmt.endswith("-list") else (fmt, False)
        check = _FORMATS.get(base)
        if check is not None:
            for item in (_LIST_SPLIT.split(value) if listed else [value]):
                problem = check(item)
                if problem:
                    return f"invalid format - {problem}"
    return None


@lru_cache(maxsize=64)
def _perl_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace("(?^:", "(?:"))  # Perl's stringified qr// flags group


def check_permission(found: Endpoint, can: Callable[[str, str], bool], params: Mapping[str, str]) -> None:
    """The method's `permissions.check`, as PVE::RPCEnvironment::check_api_permission evaluates it."""
    check = found.permissions.get("check")
    if check and not _allowed(check, can, params):
        raise PveFailure(403, _denied(check, can, params))


def _allowed(check: list[Any], can: Callable[[str, str], bool], params: Mapping[str, str]) -> bool:
    op = check[0]
    if op == "and":
        return all(_allowed(c, can, params) for c in check[1:])
    if op == "or":
        return any(_allowed(c, can, params) for c in check[1:])
    if op == "perm":
        path, privileges = _acl_path(check[1], params), check[2]
        wanted = any if "any" in check[3:] else all
        return wanted(can(path, p) for p in privileges)
    return True  # userid-param, perm-modify, ...: the handler checks those


def _denied(check: list[Any], can: Callable[[str, str], bool], params: Mapping[str, str]) -> str:
    if check[0] == "perm":
        path, privileges = _acl_path(check[1], params), check[2]
        if "any" in check[3:]:
            return f"Permission check failed ({path}, {'|'.join(privileges)})"
        return f"Permission check failed ({path}, {next(p for p in privileges if not can(path, p))})"
    if check[0] == "and":
        return _denied(next(c for c in check[1:] if not _allowed(c, can, params)), can, params)
    return "Permission check failed"


def _acl_path(template: str, params: Mapping[str, str]) -> str:
    path = re.sub(r"\{(\w+)\}", lambda m: params.get(m.group(1), ""), template)
    return path.rstrip("/") or "/"
