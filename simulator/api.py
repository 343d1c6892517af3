"""One API request, from path to answer: faults, auth, routing, proxying and the envelope."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from pveapi.client import endpoint_template

from . import apischema, views_cluster, views_nodes, views_pools, views_replication  # noqa: F401 - importing registers their routes
from .auth import Authenticator
from .cluster import SimCluster
from .failure import PveFailure, not_implemented, unreachable
from .faults import FaultSet
from .resources import ResourceCache
from .routing import Call, match

API_PREFIX = "/api2/json"


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    body: bytes


class PveApi:
    def __init__(self, cluster: SimCluster, auth: Authenticator, faults: FaultSet,
                 auth_failure_delay: float = 0.0) -> None:
        self.cluster = cluster
        self.auth = auth
        self.faults = faults
        self.resources = ResourceCache(cluster)
        self.auth_failure_delay = auth_failure_delay
        self._counts: Counter[str] = Counter()
        # Requests PVE's schema refuses (a 400 from the parameter check, or a 501 for a method
        # and path it lacks): "METHOD /template: parameter: message" -> count. The client-side
        # contract test (tests/sim/test_client_contract.py) drives our clients and expects none.
        self._refusals: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.stopping = threading.Event()

    def request_counts(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._counts)

    def refusals(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(self._refusals)

    def reset_counts(self) -> None:
        with self._counts_lock:
            self._counts.clear()
            self._refusals.clear()

    def _refused(self, method: str, template: str, failure: PveFailure) -> PveFailure:
        problems = [f"{name}: {text}" for name, text in (failure.errors or {}).items()] or [failure.message]
        with self._counts_lock:
            self._refusals.update(f"{method} {template}: {problem}" for problem in problems)
        return failure

    def _check_parameters(self, method: str, template: str, schema: apischema.Endpoint, params: Mapping[str, str],
                          major: int) -> None:
        try:
            apischema.check_parameters(schema, params, major)
        except PveFailure as failure:
            raise self._refused(method, template, failure) from None

    def handle(self, method: str, path: str, params: dict[str, str], headers: Mapping[str, str],
               cookies: Mapping[str, str]) -> Answer:
        """`path` is relative to /api2/json, without the query string."""
        path = "/" + path.strip("/")
        template = endpoint_template(path)
        with self._counts_lock:
            self._counts[f"{method} {template}"] += 1
        try:
            data = self._dispatch(method, path, template, params, headers, cookies)
        except PveFailure as failure:
            if failure.status == 401 and self.auth_failure_delay:
                time.sleep(self.auth_failure_delay)  # a real PVE slows down password guessing
            return Answer(failure.status, failure.message, failure.body())
        if isinstance(data, bytes):
            return Answer(200, "OK", data)
        return Answer(200, "OK", json.dumps({"data": data}, separators=(",", ":")).encode())

    def _dispatch(self, method: str, path: str, template: str, params: dict[str, str],
                  headers: Mapping[str, str], cookies: Mapping[str, str]) -> object:
        faults = self.faults.for_request(method, template, path)
        if faults.latency:
            self.stopping.wait(faults.latency)
        if faults.hang is not None:
            hang = faults.hang
            deadline = float(hang.spec.get("seconds", 600))
            while not (hang.released.wait(0.1) or self.stopping.is_set()) and deadline > 0:
                deadline -= 0.1
        if faults.error is not None:
            raise faults.error
        if faults.answer is not None:
            return faults.answer
        if method == "POST" and path == "/access/ticket":
            self._check_parameters(method, template, apischema.endpoint(method, path, {}), params,
                                   self.cluster.api_node.spec.major)
            return self.auth.login(params["username"], params["password"])
        caller = self.auth.authenticate(headers, cookies, method)
        found = match(method, path)
        if found is None:
            raise self._refused(method, template, not_implemented(method, path))
        route, args = found
        schema = apischema.endpoint(method, route.template, args)
        merged = {**params, **{k: v for k, v in args.items() if k != "kind"}}
        with self.cluster.lock:
            now = self.cluster.tick()
            answering = self.cluster.nodes.get(args["node"]) if schema.proxyto else None
            if answering is not None and not answering.online:
                raise unreachable(595)
            major = (answering or self.cluster.api_node).spec.major
            if major < 9 and (method, schema.path) in apischema.PVE9_ENDPOINTS:
                raise self._refused(method, template, not_implemented(method, path))
            apischema.check_permission(schema, caller.can, merged)
            self._check_parameters(method, template, schema, merged, major)
            return route.handler(Call(self, caller, params, now, method, path), **args)
