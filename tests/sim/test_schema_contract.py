"""The contract: every endpoint the simulator serves answers as Proxmox VE 9.1.3's schema says.

The cases come from the trimmed schema (simulator/schema/, through simulator.apischema), so a
newly served endpoint is covered without touching this file: its answer is checked against
the schema's `returns`, and an unknown, a missing (where a required one exists), a mistyped
(where a typed one exists) and an out-of-enum (where an enum exists) parameter must each get
PVE's 400 with that parameter's message. Where the wire differs from the schema,
/work/shared/pve-api.md documents it and WIRE_EXCEPTIONS below lists it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from simulator import apischema
from simulator.routing import ROUTES
from tests.sim.conftest import DEMO_PASSWORD
from tests.support import pveschema
from tests.support.sim import RunningSimulator, demo_with_replication, running_simulator

Key = tuple[str, str]  # (method, schema path)
SERVED: dict[Key, apischema.Endpoint] = apischema.endpoints()
# Writes last, so the reads see the demo as it starts (plus the tasks the fixture made).
ORDER = sorted(SERVED, key=lambda k: (k[0] != "GET", k[1], k[0]))


def _decimal_strings(count: int | None = None) -> Any:
    def accepts(value: Any) -> bool:
        items = value if isinstance(value, list) else [value]
        return (count is None or len(items) == count) and all(
            isinstance(v, str) and re.fullmatch(r"\d+\.\d+", v) for v in items)
    return accepts


def _node_map(value: Any) -> bool:
    """pve-api.md: not_allowed_nodes is {node: {"unavailable_storages": [...]}}, not the schema's one object."""
    return isinstance(value, dict) and all(
        isinstance(reasons, dict) and all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                          for v in reasons.values()) for reasons in value.values())


# The wire as ../shared/pve-api.md documents it, where it differs from (or pins down) the schema.
WIRE_EXCEPTIONS: dict[Key, pveschema.WireExceptions] = {
    ("GET", "/nodes/{node}/status"): {
        "loadavg": _decimal_strings(3),     # ["0.16","0.10","0.02"]: strings
        "cpuinfo.mhz": _decimal_strings(),  # "800.000": a string, not in the schema
    },
    ("GET", "/nodes/{node}/qemu/{vmid}/migrate"): {"not_allowed_nodes": _node_map},
    ("GET", "/nodes/{node}/lxc/{vmid}/migrate"): {"not-allowed-nodes": _node_map},
    # Not in pve-api.md: pending lists config values as the config GET has them (qemu-server and
    # pve-container type-check config values, so integer options are JSON integers).
    ("GET", "/nodes/{node}/qemu/{vmid}/pending"): {"[].value": lambda v: isinstance(v, (str, int))},
    ("GET", "/nodes/{node}/lxc/{vmid}/pending"): {"[].value": lambda v: isinstance(v, (str, int))},
}

UNKNOWN = "property is not defined in schema and the schema does not allow additional properties"
MISSING = "property is missing and it is not optional"
BAD = "x-bogus"
# The UPID of the migration task the module's simulator leaves running (set by the `sim` fixture).
RUNNING_TASK: dict[str, str] = {}


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    """The demo (with replication jobs and a QDevice), frozen, with a finished and a running migration task on pve1."""
    with running_simulator(demo_with_replication(), time_scale=0) as running:
        _call(running, "POST", "/nodes/pve1/qemu/105/migrate", {"target": "pve5", "online": "1"})
        running.advance(600)
        RUNNING_TASK["upid"] = _call(running, "POST", "/nodes/pve1/qemu/107/migrate",
                                     {"target": "pve5", "online": "1"}).json()["data"]
        yield running


def _call(sim: RunningSimulator, method: str, path: str, params: Mapping[str, str]) -> requests.Response:
    headers = {} if path == "/access/ticket" else {"Authorization": f"PVEAPIToken={sim.token_id}={sim.token_value}"}
    where = "params" if method in ("GET", "DELETE") else "data"
    fields: dict[str, Any] = {where: dict(params)}
    return requests.request(method, f"{sim.url}{path}", headers=headers, verify=sim.ca_path, timeout=30, **fields)


_pool_counter = iter(range(1, 10**6))


def _sample(sim: RunningSimulator, key: Key, node: str = "pve1", vmid: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """A valid call of `key`: the path arguments and the other parameters it requires."""
    method, path = key
    args = {"node": node, "sid": "vm:120", "poolid": "prod", "upid": RUNNING_TASK["upid"], "id": "100-0"}
    if "{vmid}" in path:
        kind = "qemu" if "/qemu/" in path else "lxc"
        args["vmid"] = vmid or str(next(g["vmid"] for g in sim.state()["guests"]
                                        if g["node"] == node and g["type"] == kind and not g["lock"]))
    if "pool" in path and method != "GET":  # a pool of its own: writes must not touch the demo's
        args["poolid"] = f"contract{next(_pool_counter)}"
        if method != "POST":
            assert _call(sim, "POST", "/pools", {"poolid": args["poolid"]}).status_code == 200
    values = {"target": "pve5", "timeframe": "hour", "username": "root@pam", "password": DEMO_PASSWORD,
              "poolid": args["poolid"], "restart": "1", "online": "1"}
    params = {}
    for name, prop in SERVED[key].properties.items():
        if f"{{{name}}}" in path:
            continue
        if not prop.get("optional") or (name in ("online", "restart") and method == "POST"):
            assert name in values, f"{method} {path}: no sample value for required {name!r}; add one here"
            params[name] = values[name]
    return args, params


def _url(path: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: args[m.group(1)], path)


def _returns_problems(key: Key, data: Any) -> list[str]:
    return pveschema.problems(data, SERVED[key].returns, WIRE_EXCEPTIONS.get(key, {}))


def test_every_served_route_is_in_the_trimmed_schema_and_nothing_else_is() -> None:
    served = {(r.method, r.template.replace("{kind}", kind))
              for r in ROUTES for kind in (("qemu", "lxc") if "{kind}" in r.template else ("",))}
    missing = sorted(served - set(SERVED))
    assert not missing, f"served but not in the trimmed schema (rerun scripts/trim-pve-schema.py): {missing}"
    assert set(SERVED) - served == {("POST", "/access/ticket")}  # answered before routing


@pytest.mark.parametrize("key", ORDER, ids=[f"{m} {p}" for m, p in ORDER])
def test_answer_matches_the_schema_returns(sim: RunningSimulator, key: Key) -> None:
    args, params = _sample(sim, key)
    response = _call(sim, key[0], _url(key[1], args), params)
    assert response.status_code == 200, (response.status_code, response.reason)
    assert _returns_problems(key, response.json()["data"]) == []


# A task or a replication job is on one node only (others answer 500, as PVE does).
@pytest.mark.parametrize("key", [k for k in ORDER if k[0] == "GET" and "{node}" in k[1] and "{upid}" not in k[1]
                                 and "{id}" not in k[1]],
                         ids=lambda k: f"{k[0]} {k[1]}")
def test_answers_for_every_node_and_guest_match_the_schema(sim: RunningSimulator, key: Key) -> None:
    """Every guest (locked, stopped, HA, local disks, templates) and node, not just one sample."""
    state = sim.state()
    kind = "qemu" if "/qemu/" in key[1] else "lxc"
    targets = ([(g["node"], str(g["vmid"])) for g in state["guests"] if g["type"] == kind]
               if "{vmid}" in key[1] else [(n["name"], None) for n in state["nodes"]])
    found = {}
    for node, vmid in targets:
        args, params = _sample(sim, key, node, vmid)
        response = _call(sim, "GET", _url(key[1], args), params)
        assert response.status_code == 200, (node, vmid, response.status_code, response.reason)
        found.update({f"{node}/{vmid}: {p}": 1 for p in _returns_problems(key, response.json()["data"])})
    assert list(found) == []


def _cases() -> Iterator[Any]:
    """(key, case, parameter, value, PVE's message), derived from each endpoint's parameters."""
    for key in ORDER:
        found = SERVED[key]
        props = {n: p for n, p in found.properties.items()}
        if found.closed:
            yield key, "unknown", "bogus-parameter", "1", UNKNOWN
        required = [n for n, p in props.items() if not p.get("optional") and f"{{{n}}}" not in key[1]]
        if required:
            yield key, "missing", required[0], None, MISSING
        typed = sorted((n for n, p in props.items() if p.get("type") in ("integer", "number", "boolean")),
                       key=lambda n: f"{{{n}}}" in key[1])  # a query/body parameter first, a path one if none
        if typed:
            yield key, "mistyped", typed[0], "x", f"type check ('{props[typed[0]]['type']}') failed - got 'x'"
        enums = [n for n, p in props.items() if "enum" in p]
        if enums:
            enum = props[enums[0]]["enum"]
            yield key, "out-of-enum", enums[0], BAD, f"value '{BAD}' does not have a value in the enumeration '{', '.join(enum)}'"


CASES = list(_cases())


@pytest.mark.parametrize(("key", "case", "name", "value", "message"), CASES,
                         ids=[f"{k[0]} {k[1]} {c} {n}" for k, c, n, _, _ in CASES])
def test_a_bad_parameter_gets_pves_400(sim: RunningSimulator, key: Key, case: str, name: str, value: str | None,
                                       message: str) -> None:
    args, params = _sample(sim, key)
    requires = SERVED[key].properties.get(name, {}).get("requires")
    if requires:
        params[requires] = args.get(requires, "prod")
    if f"{{{name}}}" in key[1]:
        args[name] = str(value)
    elif value is None:
        params.pop(name)
    else:
        params[name] = value
    response = _call(sim, key[0], _url(key[1], args), params)
    assert (response.status_code, response.reason) == (400, "Parameter verification failed."), response.text
    assert response.json() == {"data": None, "errors": {name: message}, "message": "Parameter verification failed.\n"}


def test_every_endpoint_refuses_unknown_parameters() -> None:
    """PVE's schema closes every endpoint served (additionalProperties: 0); an open one would
    silently lose its unknown-parameter case above."""
    assert [f"{m} {p}" for (m, p), found in SERVED.items() if not found.closed] == []
