"""HTTP for `pvebalance run`: /metrics, /health, /plan (read-only, no token) and POST /webhook
(Alertmanager's webhook format, bearer token) which starts a cycle at once.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog

from pveapi.settings import Secret

log = structlog.get_logger("pvebalance.server")

MAX_BODY = 1024 * 1024  # Alertmanager batches are small; refuse anything absurd


@dataclass(frozen=True)
class Endpoints:
    """What the server shows and does; the loop provides these."""

    metrics: Callable[[], bytes]
    health: Callable[[], tuple[bool, Mapping[str, Any]]]
    plan: Callable[[], Mapping[str, Any] | None]
    trigger: Callable[[str], None]  # start a cycle now; the argument says why
    webhook_token: Secret | None


class ControllerServer:
    def __init__(self, address: tuple[str, int], endpoints: Endpoints) -> None:
        self._httpd = ThreadingHTTPServer(address, _handler(endpoints))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="pvebalance-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("http.listening", url=self.url)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _handler(endpoints: Endpoints) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "pvebalance"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass  # access logs would drown the event log; errors are logged as events below

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, endpoints.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/health":
                ok, detail = endpoints.health()
                self._json(200 if ok else 503, {"status": "ok" if ok else "unhealthy", **detail})
            elif path == "/plan":
                plan = endpoints.plan()
                if plan is None:
                    self._json(404, {"error": "no plan yet: the first cycle has not finished"})
                else:
                    self._json(200, plan)
            else:
                self._json(404, {"error": "unknown path; try /metrics, /health, /plan or POST /webhook"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/webhook":
                self._json(404, {"error": "unknown path; POST /webhook only"})
                return
            token = endpoints.webhook_token
            if token is None:
                self._json(403, {"error": "webhook disabled: set run.webhook_token_file or run.webhook_token_env"})
                return
            sent = self.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token.reveal()}".encode()):
                log.warning("webhook.refused", client=self.client_address[0])
                self._json(401, {"error": "missing or wrong bearer token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": "payload too large"})
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"null")
            except ValueError:
                payload = None
            alerts = payload.get("alerts") if isinstance(payload, dict) else None
            if not isinstance(alerts, list):
                self._json(400, {"error": "expected Alertmanager's webhook JSON: an object with an alerts list"})
                return
            firing = [a for a in alerts if isinstance(a, dict) and a.get("status", payload.get("status")) == "firing"]
            names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in firing if isinstance(a.get("labels"), dict)})
            if firing:
                endpoints.trigger(f"webhook: {', '.join(names) or 'alert'} firing")
            log.info("webhook.received", alerts=len(alerts), firing=len(firing), names=names)
            self._json(202, {"triggered": bool(firing), "firing": len(firing)})

        def _json(self, status: int, body: Mapping[str, Any]) -> None:
            self._send(status, (json.dumps(body, indent=1) + "\n").encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
