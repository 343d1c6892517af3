"""The admin API under /_sim/ (outside /api2): placement, clock, request counts, faults, pveum.

For tests and benchmarks only; see docs/simulator.md. Answers are plain JSON (no envelope).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from pveapi.errors import ConfigError
from pveapi.values import number

from . import pveum
from .api import Answer, PveApi
from .validation import MAX_EPOCH, MAX_SECONDS, MAX_TIME_SCALE

ADMIN_PREFIX = "/_sim"
_NODE_ACTION = re.compile(r"^/nodes/([^/]+)/(offline|online)$")
_NODE_MAINTENANCE = re.compile(r"^/nodes/([^/]+)/maintenance/(enable|disable)$")
_FAULT = re.compile(r"^/faults/([^/]+)$")


class AdminApi:
    def __init__(self, api: PveApi, token: str | None = None) -> None:
        self.api = api
        self._token = token

    def handle(self, method: str, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        if self._token and not hmac.compare_digest(headers.get("Authorization", ""), f"Bearer {self._token}"):
            return _json(401, {"error": "admin API: send 'Authorization: Bearer <admin token>'"}, "Unauthorized")
        try:
            payload = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError as exc:
            return _json(400, {"error": f"body is not JSON: {exc.msg}"}, "Bad Request")
        try:
            result = self._route(method, path.rstrip("/") or "/", payload)
        except ConfigError as exc:
            return _json(400, {"error": str(exc)}, "Bad Request")
        if result is None:
            return _json(404, {"error": f"no admin endpoint {method} {ADMIN_PREFIX}{path}"}, "Not Found")
        return _json(200, result, "OK")

    def _route(self, method: str, path: str, payload: Any) -> Any:
        cluster = self.api.cluster
        if (method, path) == ("GET", "/state"):
            return self.state()
        if path == "/clock":
            if method == "POST":
                self._set_clock(payload)
            elif method != "GET":
                return None
            return {"time": cluster.tick(), "time_scale": cluster.clock.scale}
        if (method, path) == ("GET", "/requests"):
            counts = self.api.request_counts()
            return {"counts": counts, "total": sum(counts.values()), "refused": self.api.refusals()}
        if (method, path) == ("POST", "/requests/reset"):
            self.api.reset_counts()
            return {"counts": {}, "total": 0, "refused": {}}
        if path == "/faults":
            if method == "GET":
                return {"faults": self.api.faults.list()}
            if method == "POST":
                return {"ids": self.api.faults.add(payload)}
            if method == "DELETE":
                return {"cleared": self.api.faults.clear()}
        fault = _FAULT.match(path)
        if fault and method == "DELETE":
            return {"cleared": self.api.faults.clear(fault.group(1))}
        action = _NODE_ACTION.match(path)
        if action and method == "POST":
            name = action.group(1)
            if name not in cluster.nodes:
                raise ConfigError(f"unknown node {name!r}; known nodes: {', '.join(cluster.nodes)}")
            cluster.tick()
            cluster.set_online(name, action.group(2) == "online")
            return self.state()
        maintenance = _NODE_MAINTENANCE.match(path)
        if maintenance and method == "POST":
            name = maintenance.group(1)
            if name not in cluster.nodes:
                raise ConfigError(f"unknown node {name!r}; known nodes: {', '.join(cluster.nodes)}")
            cluster.set_maintenance(name, maintenance.group(2) == "enable")
            return self.state()
        if (method, path) == ("POST", "/pveum"):
            command = payload.get("command") if isinstance(payload, Mapping) else None
            if not isinstance(command, str) or not command.strip():
                raise ConfigError('pveum: send {"command": "pveum user add NAME@REALM ..."}')
            return {"data": pveum.run(self.api.auth.access, command)}
        if (method, path) == ("GET", "/tasks"):
            with cluster.lock:
                cluster.tick()
                return {"tasks": [{**t.status_entry(), "endtime": t.endtime, "bwlimit": t.bwlimit}
                                  for t in cluster.tasks.values()]}
        return None

    def _set_clock(self, payload: Any) -> None:
        if not isinstance(payload, Mapping) or not ({"set", "advance", "time_scale"} & set(payload)):
            raise ConfigError('clock: send {"set": epoch}, {"advance": seconds} or {"time_scale": x}')
        limits = {"set": MAX_EPOCH, "advance": MAX_SECONDS, "time_scale": MAX_TIME_SCALE}
        values = {k: number(payload[k], f"clock: {k}", 0, high) for k, high in limits.items() if payload.get(k) is not None}
        clock = self.api.cluster.clock
        with self.api.cluster.lock:
            self.api.cluster.tick()  # events due before the jump run at their own times
            if "time_scale" in values:
                clock.set_scale(values["time_scale"])
            if "set" in values:
                clock.set(values["set"])
            if "advance" in values:
                clock.advance(values["advance"])
            self.api.cluster.tick()

    def state(self) -> dict[str, Any]:
        cluster = self.api.cluster
        with cluster.lock:
            now = cluster.tick()
            return {
                "time": now,
                "nodes": [{"name": n, "online": s.online, "maintenance": s.maintenance,
                           "guests": sorted(g.spec.vmid for g in cluster.guests_on(n))}
                          for n, s in cluster.nodes.items()],
                "guests": [{"vmid": g.spec.vmid, "type": g.spec.type, "name": g.spec.name, "node": g.node,
                            "status": g.status, "lock": g.lock, "hastate": g.hastate}
                           for g in cluster.guests.values()],
                "tasks_running": sum(t.status == "running" for t in cluster.tasks.values()),
            }


def _json(status: int, payload: Any, reason: str) -> Answer:
    return Answer(status, reason, json.dumps(payload).encode())
