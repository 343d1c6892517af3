"""HTTP for `pvebalance run`: /metrics, /health, /plan (read-only, no token), POST /webhook
(Alertmanager's webhook format, bearer token) which starts a cycle at once, and the operator
API under /api/v1 (controller/api.py, docs/api.md) with its OpenAPI at /openapi.json.

A FastAPI application served by Hypercorn on its own thread and event loop. What keeps the
server from being starved, and where it is done:
- a connection that sends no complete request head within IDLE_SECONDS is closed (Hypercorn's
  idle timer runs from the connection's start until the head is in), and so is one idle that
  long after a response; reads that get nothing for READ_SECONDS end the connection;
- connections are coroutines, not threads: hundreds of half-open ones cost memory, never a
  worker; at most MAX_IN_FLIGHT requests are answered at once, the next get 503;
- request heads over 16 KiB and a malformed or negative Content-Length are refused by h11
  with 400 before any of our code runs; a body is read as a stream and refused with 413 as
  soon as it passes MAX_BODY (whatever Content-Length said, chunked included), and with 408
  when it is not all there within BODY_SECONDS.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
from collections.abc import Awaitable, Callable
from typing import cast

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework
from hypercorn.utils import wrap_app
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.api import add_api
from controller.endpoints import Endpoints
from controller.httpio import json_response, read_body
from pveapi.errors import ConfigError

log = structlog.get_logger("pvebalance.server")

MAX_HEAD = 16 * 1024  # request line and headers
IDLE_SECONDS = 10  # for a request head to arrive, and between requests on one connection
READ_SECONDS = 30  # without receiving anything, mid-request
MAX_IN_FLIGHT = 32  # requests answered at once; the endpoints are quick, more is an attack


class ControllerServer:
    """Binds at once (a busy port or an unknown host is a ConfigError naming run.listen),
    serves from `start` until `stop`."""

    def __init__(self, address: tuple[str, int], endpoints: Endpoints) -> None:
        host, port = address
        config = HypercornConfig()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.keep_alive_timeout = IDLE_SECONDS
        config.read_timeout = READ_SECONDS
        config.h11_max_incomplete_size = MAX_HEAD
        config.accesslog = None  # access logs would drown the event log; errors are logged as events
        config.errorlog = None
        config.graceful_timeout = 1
        try:
            self._sockets = config.create_sockets()
            for sock in self._sockets.insecure_sockets:
                sock.listen(config.backlog)  # connections queue from now on, before the loop accepts them
        except OSError as exc:
            raise ConfigError(
                f"run.listen {host}:{port}: cannot listen there ({exc.strerror or exc}); "
                "pick a free port on an address of this host"
            ) from None
        self._config = config
        # Starlette's and Hypercorn's ASGI type hints spell the same callable two ways.
        app = cast(ASGIFramework, application(endpoints))
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="pvebalance-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sockets.insecure_sockets[0].getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=30)
        log.info("http.listening", url=self.url)

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._ready.set()
        await worker_serve(self._app, self._config, sockets=self._sockets, shutdown_trigger=self._stopping.wait)


def application(endpoints: Endpoints) -> FastAPI:
    """The controller's HTTP API as an ASGI application."""
    app = FastAPI(title="pvebalance controller", docs_url=None, redoc_url=None)
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @app.middleware("http")
    async def cap_in_flight(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if in_flight.locked():
            return json_response(503, {"error": "too many requests at once; try again"})
        async with in_flight:
            return await call_next(request)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(endpoints.metrics(), 200, media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/health")
    def health() -> Response:
        ok, detail = endpoints.health()
        return json_response(200 if ok else 503, {"status": "ok" if ok else "unhealthy", **detail})

    @app.get("/plan")
    def plan() -> Response:
        current = endpoints.plan()
        if current is None:
            return json_response(404, {"error": "no plan yet: the first cycle has not finished"})
        return json_response(200, current)

    @app.post("/webhook")
    async def webhook(request: Request) -> Response:
        token = endpoints.webhook_token
        if token is None:
            return json_response(403, {"error": "webhook disabled: set run.webhook_token_file or run.webhook_token_env"})
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {token.reveal()}".encode()):
            log.warning("webhook.refused", client=request.client.host if request.client else None)
            return json_response(401, {"error": "missing or wrong bearer token"})
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list):
            return json_response(400, {"error": "expected Alertmanager's webhook JSON: an object with an alerts list"})
        firing = [a for a in alerts if isinstance(a, dict) and a.get("status", payload.get("status")) == "firing"]
        names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in firing if isinstance(a.get("labels"), dict)})
        if firing:
            endpoints.trigger(f"webhook: {', '.join(names) or 'alert'} firing")
        log.info("webhook.received", alerts=len(alerts), firing=len(firing), names=names)
        return json_response(202, {"triggered": bool(firing), "firing": len(firing)})

    add_api(app, endpoints)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return json_response(exc.status_code, {"error": str(exc.detail)})

    @app.get("/{path:path}", include_in_schema=False)
    def unknown_get(path: str) -> Response:
        return json_response(404, {"error": "unknown path; try /metrics, /health, /plan, POST /webhook or /api/v1 (/openapi.json)"})

    @app.post("/{path:path}", include_in_schema=False)
    def unknown_post(path: str) -> Response:
        return json_response(404, {"error": "unknown path; POST /webhook or /api/v1 (/openapi.json)"})

    return app
