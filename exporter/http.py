"""HTTP serving: /metrics, the multi-target /pve?target=&module=, and /health.

Exposition is prometheus-client's text format; each request scrapes its target, bounded by the
scrape timeout Prometheus sends.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

from pveapi.errors import ApiError, ConfigError, ErrorKind

from .collectors import CollectorOptions, concerns, resources_registry, rest_registry
from .collectors.families import encode, encode_parts
from .compression import GzipStream
from .config import ExporterConfig, Module
from .scrape import RESOURCES, ScrapeResult, scrape
from .target import Target, TargetCache

log = structlog.get_logger("pvebalance.exporter")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
# Prometheus' scrape timeout header; we stop waiting a little before it so the answer arrives.
_TIMEOUT_HEADER = "HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"
_TIMEOUT_MARGIN = 0.5
_MIN_API_BUDGET = 0.5
# Level 1: a 10,000-guest answer (19 MB of text) shrinks to 11% in 0.08 s; level 9 (what
# prometheus-client's own servers use) gets 9% but takes 1.0 s (measured here, unloaded-ish).
# It is compressed while it is rendered (GzipStream).
_GZIP_LEVEL = 1

INDEX = b"""<html><head><title>pvebalance-exporter</title></head><body>
<h1>pvebalance-exporter</h1>
<p><a href="/metrics">/metrics</a>: the default module's target</p>
<p>/pve?target=HOST&amp;module=NAME: any configured target (multi-target)</p>
<p><a href="/health">/health</a>: liveness</p>
</body></html>
"""


@dataclass(frozen=True)
class ServeOptions:
    collectors: CollectorOptions
    scrape_timeout: float = 9.0  # below Prometheus' default 10 s scrape timeout
    max_workers: int = 16  # parallel API calls per target


class ExporterApp:
    def __init__(self, config: ExporterConfig, options: ServeOptions) -> None:
        self.config = config
        self.options = options
        self.targets = TargetCache(options.max_workers)

    def reload(self, config: ExporterConfig) -> None:
        """SIGHUP: scrapes from now on use `config`; one under way finishes with the old one."""
        self.config = config

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        params = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path == "/health":
            return _plain(start_response, "200 OK", "OK\n")
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX]
        if path == "/metrics":
            module = self.config.default_module
            return self._scrape(environ, start_response, module, module.settings.host)
        if path == "/pve":
            try:
                module = self.config.module(params.get("module"))
                target = module.allowed_target(params.get("target") or module.settings.host)
            except ConfigError as exc:
                return _plain(start_response, "400 Bad Request", f"{exc}\n")
            return self._scrape(environ, start_response, module, target)
        return _plain(start_response, "404 Not Found", "not found: try /metrics, /pve?target=HOST or /health\n")

    def _scrape(
        self, environ: dict[str, Any], start_response: StartResponse, module: Module, host: str
    ) -> Iterable[bytes]:
        target = self.targets.get(module.name, module.settings_for(host))
        deadline = time.monotonic() + self._timeout(environ)
        # Scrapes of one target that arrive while a collection is under way wait for it rather
        # than each redoing every call and render: 20 scrapers cost one collection, not 20.
        collection, leading = target.collections.join()
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")  # Prometheus always asks
        if leading:
            try:
                collection.finish_body(*self._collect(target, deadline, gzipped))
            finally:
                target.collections.finish(collection)
        waited = leading or collection.done.wait(max(0.0, deadline - time.monotonic()))
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4), ("Vary", "Accept-Encoding")]
        if not (waited and collection.collected):
            body = self._not_collected(target)
        elif gzipped:
            body = collection.gzipped(_GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        else:
            body = collection.text()
        start_response("200 OK", headers + [("Content-Length", str(len(body)))])
        return [body]

    def _collect(self, target: Target, deadline: float, gzipped: bool) -> tuple[list[bytes], bytes | None]:
        """One scrape of `target`, rendered, and gzipped if the scrape asks for it; done by the
        first of the scrapes waiting for it. A later scrape that wants gzip from a plain
        collection gets it compressed then, once for all (Collection.gzipped)."""
        options = self.options.collectors
        # The answer must arrive within the timeout, rendering included: the API calls get what
        # the last render of this target left over.
        budget = max(_MIN_API_BUDGET, deadline - time.monotonic() - target.render_seconds)
        # Always the text format: every Prometheus reads it. The /cluster/resources families
        # (most of the samples) are rendered while the node calls are still out; each part is a
        # complete set of families, so they concatenate.
        parts: list[bytes] = []
        rendering = 0.0
        # Each family's text is compressed on another thread as soon as it is rendered; an
        # unchanged family's deflate data comes from the last answer's (KeptTexts, KeptSegments).
        stream = GzipStream(_GZIP_LEVEL, target.kept_segments) if gzipped else None

        def render(registry: CollectorRegistry) -> None:
            nonlocal rendering
            started = time.monotonic()
            for part in encode_parts(registry.collect(), target.kept_texts):
                parts.append(part.text)
                if stream is not None:
                    stream.write(part.text, part.kept)
            rendering += time.monotonic() - started

        try:
            result = scrape(target, concerns(options), budget,
                            while_waiting=lambda inventory: render(resources_registry(inventory, options)))
            render(rest_registry(result, options, target.stats))
        finally:  # the compressing thread ends even if rendering failed
            zipped = stream.close() if stream is not None else None
        target.render_seconds = rendering
        return parts, zipped

    def _not_collected(self, target: Target) -> bytes:
        """The answer of a scrape whose deadline passed while another scrape's collection ran."""
        error = ApiError(ErrorKind.TIMEOUT, RESOURCES.path, "a concurrent scrape's collection outlasted this scrape's deadline")
        result = ScrapeResult(cluster=target.host, inventory=None, failures={RESOURCES.key: error})
        return encode(rest_registry(result, self.options.collectors, target.stats).collect())

    def _timeout(self, environ: dict[str, Any]) -> float:
        try:
            asked = float(environ.get(_TIMEOUT_HEADER, "")) - _TIMEOUT_MARGIN
        except ValueError:
            return self.options.scrape_timeout
        if not math.isfinite(asked):  # `nan` and `inf` parse as floats; neither is a deadline
            return self.options.scrape_timeout
        return max(_MIN_API_BUDGET, min(self.options.scrape_timeout, asked))

    def close(self) -> None:
        self.targets.close()


def _plain(start_response: StartResponse, status: str, text: str) -> Iterable[bytes]:
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """Requests are logged as structlog events at debug level, not printed to stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("http_request", client=self.address_string(), request=format % args)


def parse_listen_address(address: str) -> tuple[str, int]:
    """`0.0.0.0:19221`, `[::]:19221`, `:19221` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--web.listen-address: {address!r} must be HOST:PORT, e.g. 0.0.0.0:19221 or [::]:19221")
    return host.strip("[]") or "0.0.0.0", int(port)


def make_http_server(address: str, app: ExporterApp) -> WSGIServer:
    host, port = parse_listen_address(address)
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"--web.listen-address: cannot resolve {host!r}: {exc.strerror}") from None

    class Server(ThreadingWSGIServer):
        address_family = family

    try:
        return make_server(host, port, app, Server, handler_class=_QuietHandler)
    except OSError as exc:
        raise ConfigError(f"--web.listen-address: cannot listen on {address}: {exc.strerror}") from None

