"""Fault injection: latency, errors, hung requests, nodes going down, failing migrations.

Faults come from `--faults FILE` or the admin API; the format is in docs/simulator.md.
"""

from __future__ import annotations

import builtins
import fnmatch
import itertools
import json
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pveapi.errors import ConfigError
from pveapi.values import count, number

from .cluster import MigrationFailure, SimCluster
from .failure import PveFailure
from .validation import MAX_EPOCH, MAX_SECONDS

FAULT_TYPES = ("latency", "error", "hang", "answer", "node_offline", "migration_failure")
_DEFAULT_MESSAGES = {
    400: "Parameter verification failed.",
    401: "Authentication failed!",
    403: "Permission check failed (/, Sys.Audit)",
    500: "internal error (simulated fault)",
    501: "Method not implemented (simulated fault)",
    595: "No route to host",
    596: "Connection timed out",
}


@dataclass
class Fault:
    id: str
    type: str
    spec: dict[str, Any]
    endpoint: str = "*"
    node: str | None = None
    rate: float = 1.0
    remaining: int | None = None
    released: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, template: str, path: str) -> bool:
        if self.type not in ("latency", "error", "hang", "answer"):
            return False
        pattern = self.endpoint if " " in self.endpoint or self.endpoint == "*" else f"* {self.endpoint}"
        if not fnmatch.fnmatchcase(f"{method} {template}", pattern):
            return False
        return self.node is None or path.startswith(f"/nodes/{self.node}/") or path == f"/nodes/{self.node}"


@dataclass(frozen=True)
class RequestFaults:
    """What the faults ask of one request, applied by the server in this order."""

    latency: float = 0.0
    hang: Fault | None = None
    error: PveFailure | None = None
    answer: bytes | None = None  # an `answer` fault's body, sent instead of the real one


class FaultSet:
    def __init__(self, cluster: SimCluster, seed: int) -> None:
        self._cluster = cluster
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": f.id, **f.spec} for f in self._faults.values()]

    def add(self, spec: Any) -> builtins.list[str]:  # `list` here is the method above
        specs = spec if isinstance(spec, list) else [spec]
        faults = [self._parse(s, f"fault {i + 1}") for i, s in enumerate(specs)]
        for fault in faults:
            with self._lock:
                self._faults[fault.id] = fault
            self._activate(fault)
        return [f.id for f in faults]

    def clear(self, fault_id: str | None = None) -> int:
        with self._lock:
            ids = list(self._faults) if fault_id is None else [fault_id] if fault_id in self._faults else []
            removed = [self._faults.pop(i) for i in ids]
        for fault in removed:
            fault.released.set()  # hung requests answer now
        with self._cluster.lock:
            self._cluster.migration_failures = [
                m for m in self._cluster.migration_failures if m.fault_id not in {f.id for f in removed}
            ]
        return len(removed)

    def active(self, fault_id: str) -> bool:
        with self._lock:
            return fault_id in self._faults

    def for_request(self, method: str, template: str, path: str) -> RequestFaults:
        latency = 0.0
        hang: Fault | None = None
        error: PveFailure | None = None
        answer: bytes | None = None
        with self._lock:
            for fault in list(self._faults.values()):
                if not fault.matches(method, template, path) or self._rng.random() >= fault.rate:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        del self._faults[fault.id]
                if fault.type == "latency":
                    latency += float(fault.spec.get("seconds", 1.0))
                elif fault.type == "hang" and hang is None:
                    hang = fault
                elif fault.type == "answer" and answer is None:
                    answer = str(fault.spec["body"]).encode()
                elif fault.type == "error" and error is None:
                    status = int(fault.spec["status"])
                    message = str(fault.spec.get("message") or _DEFAULT_MESSAGES.get(status, "simulated fault"))
                    error = PveFailure(status, message, {"fault": "simulated"} if status == 400 else None)
        return RequestFaults(latency, hang, error, answer)

    def _parse(self, spec: Any, where: str) -> Fault:
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected an object with a `type`")
        kind = spec.get("type")
        if kind not in FAULT_TYPES:
            raise ConfigError(f"{where}: type {kind!r} is not one of {', '.join(FAULT_TYPES)}")
        rate = number(spec.get("rate", 1.0), f"{where}.rate", 0, 1)
        remaining = None if spec.get("count") is None else count(spec["count"], f"{where}.count", 1)
        if kind == "error" and (not isinstance(spec.get("status"), int) or not 400 <= spec["status"] <= 599):
            raise ConfigError(f"{where}: an error fault needs `status`, an HTTP error code such as 500 or 595")
        if kind == "answer" and not isinstance(spec.get("body"), str):
            raise ConfigError(f"{where}: an answer fault needs `body`, the exact text to answer with (HTTP 200)")
        node = spec.get("node")
        if node is not None and node not in self._cluster.nodes:
            raise ConfigError(f"{where}: unknown node {node!r}; known nodes: {', '.join(self._cluster.nodes)}")
        if kind == "node_offline" and node is None:
            raise ConfigError(f"{where}: a node_offline fault needs `node`")
        for key in ("seconds", "after", "for"):
            if spec.get(key) is not None:
                number(spec[key], f"{where}.{key}", 0, MAX_SECONDS)
        for key in ("at", "until"):
            if spec.get(key) is not None:
                number(spec[key], f"{where}.{key}", 0, MAX_EPOCH)
        return Fault(
            id=str(next(self._ids)), type=kind, spec=dict(spec), endpoint=str(spec.get("endpoint", "*")),
            node=node, rate=rate, remaining=remaining,
        )

    def _activate(self, fault: Fault) -> None:
        cluster = self._cluster
        spec = fault.spec
        if fault.type == "migration_failure":
            vmids = spec.get("vmids")
            with cluster.lock:
                cluster.migration_failures.append(MigrationFailure(
                    fault.id, frozenset(int(v) for v in vmids) if vmids is not None else None, fault.rate,
                    str(spec.get("message", "migration aborted")),
                ))
        elif fault.type == "node_offline":
            now = cluster.clock.now()
            start = float(spec.get("at", now + float(spec.get("after", 0))))
            end = spec.get("until")
            if end is None and spec.get("for") is not None:
                end = start + float(spec["for"])
            node = str(fault.node)

            def going(online: bool) -> Any:
                # Clearing the fault cancels what has not happened yet.
                return lambda at: cluster.set_online(node, online, at) if self.active(fault.id) else None

            cluster.schedule(start, going(False))
            if end is not None:
                cluster.schedule(float(end), going(True))
            cluster.tick()


def load_faults_file(path: str) -> list[Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"faults {path}: cannot read it: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"faults {path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise ConfigError(f"faults {path}: expected a list of fault objects")
    return data
