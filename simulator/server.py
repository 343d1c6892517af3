"""The HTTPS server: a threaded stdlib server in front of the API and admin handlers.

`Simulator` is the whole thing assembled from a scenario; the CLI and the test helper both
start it. Each connection gets a thread (TLS handshakes happen there, not in the accept
loop), so concurrent callers are served in parallel and a hung request blocks only itself.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import ssl
import tempfile
import threading
from collections.abc import Iterable, Mapping
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog

from .admin import ADMIN_PREFIX, AdminApi
from .api import API_PREFIX, Answer, PveApi
from .auth import Authenticator
from .clock import VirtualClock
from .cluster import SimCluster
from .faults import FaultSet
from .scenario import ALL_PRIVILEGES, Credential, Scenario, load_scenario
from .tls import make_self_signed

log = structlog.get_logger("pvebalance.sim")
_CONTENT_TYPE = "application/json;charset=UTF-8"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    api: PveApi
    admin: AdminApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection_error", client=str(client_address))  # failed handshakes, resets


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: proxmoxer's requests.Session reuses connections
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection frees its thread after this
    # Headers and body go out in one buffered write, without Nagle: small answers otherwise
    # wait for the client's delayed ACK (~40 ms each).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()  # applies `timeout` to the socket, so a silent client cannot hold the handshake
        self.request.do_handshake()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = unquote(url.path)
        # email.message.Message answers get() and [] case-insensitively, as the handlers read it
        headers = cast(Mapping[str, str], self.headers)
        if path.startswith(ADMIN_PREFIX + "/"):
            answer = self.server.admin.handle(method, path[len(ADMIN_PREFIX):], body, headers)
        elif path.startswith(API_PREFIX + "/") or path == API_PREFIX:
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            params.update(_body_params(body, self.headers.get("Content-Type", "")))
            answer = self.server.api.handle(method, path[len(API_PREFIX):], params, headers, _cookies(headers))
        else:
            answer = Answer(501, f"Method '{method} {path}' not implemented", b"")
        self.send_response(answer.status, answer.reason)
        self.send_header("Content-Type", _CONTENT_TYPE)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("request", line=format % args)

    def handle(self) -> None:
        try:
            super().handle()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            pass  # a client that goes away mid-handshake or mid-request is not our problem


def _body_params(body: bytes, content_type: str) -> dict[str, str]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("Cookie", ""))
    except CookieError:
        return {}
    return {k: unquote(v.value) for k, v in cookie.items()}


class Simulator:
    """A simulated cluster served over HTTPS. `start()` returns once it accepts connections."""

    def __init__(
        self,
        scenario: Scenario | str | Path | Mapping[str, Any] | list[Any] = "demo",
        *,
        host: str = "127.0.0.1",
        port: int = 8006,
        seed: int | None = None,
        time_scale: float | None = None,
        start: float | None = None,
        cert: str | None = None,
        key: str | None = None,
        tokens: Iterable[Credential] = (),  # extra API tokens and users, added to the scenario's
        admin_token: str | None = None,
        auth_failure_delay: float = 0.0,
        faults: Iterable[Any] = (),
        pve_version: str | None = None,  # every node reports this version (a capture has none)
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if pve_version is not None:
            self.scenario = dataclasses.replace(self.scenario, nodes=tuple(
                dataclasses.replace(n, version=pve_version) for n in self.scenario.nodes))
        seed = self.scenario.seed if seed is None else seed
        scale = self.scenario.time_scale if time_scale is None else time_scale
        self.clock = VirtualClock(self.scenario.start if start is None else start, scale)
        self.cluster = SimCluster(self.scenario, self.clock, seed)
        auth = Authenticator(self.scenario.credentials, self.scenario.roles, self.scenario.acl)
        for credential in tokens:
            auth.add(credential)
        self._tmp = tempfile.TemporaryDirectory(prefix="pvebalance-sim-")
        self.token_file: Path | None = None
        if not auth.token_ids():  # a capture: a root token, its secret in a file only the user can read
            self.token_file = Path(self._tmp.name) / "root@pam!rehearse.token"
            secret = secrets.token_hex(16)
            self.token_file.touch(mode=0o600)
            self.token_file.write_text(secret + "\n", encoding="utf-8")
            auth.add(Credential("root@pam", secret, {"/": ALL_PRIVILEGES}, "rehearse", False))
        self.faults = FaultSet(self.cluster, seed)
        self.faults.add(list(faults))
        self.api = PveApi(self.cluster, auth, self.faults, auth_failure_delay)
        self.admin = AdminApi(self.api, admin_token)
        if cert is None:
            cert_path, key_path = make_self_signed(Path(self._tmp.name), host)
        else:
            cert_path, key_path = Path(cert), Path(key or cert)
        self.cert_path = cert_path
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_path), str(key_path))
        self._server = _Server((host, port), _Handler, bind_and_activate=True)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
        self._server.api = self.api
        self._server.admin = self.admin
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{API_PREFIX}"

    @property
    def admin_url(self) -> str:
        return f"https://{self.host}:{self.port}{ADMIN_PREFIX}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"pvebalance-sim-{self.port}", daemon=True)
        self._thread.start()
        log.info("sim_started", url=self.url, scenario=self.scenario.name, cert=str(self.cert_path),
                 nodes=len(self.cluster.nodes), guests=len(self.cluster.guests), tokens=self.api.auth.token_ids(),
                 time_scale=self.clock.scale, version=self.cluster.api_node.spec.version,
                 **({"token_file": str(self.token_file)} if self.token_file else {}))
        return self

    def serve_forever(self) -> None:
        self.start()
        assert self._thread is not None
        self._thread.join()

    def stop(self) -> None:
        self.api.stopping.set()
        self.faults.clear()  # releases hung requests
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._tmp.cleanup()
