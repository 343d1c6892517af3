"""What the exporter keeps per scraped cluster between scrapes.

A `Target` (one per module + host) owns the API session (reused across scrapes), the bounded
thread pool its calls run on, answers that may be reused (`Call.max_age`), and its own
self-metrics, so /pve?target=a never reports b's API errors.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric

from pveapi.client import PveClient, endpoint_template
from pveapi.errors import ApiError, ErrorKind
from pveapi.settings import ConnectionSettings

from .compression import KeptSegments
from .kept import KeptTexts
from .scrape import NODE_STATUS, Call, CallKey, ScrapeResult

log = structlog.get_logger("pvebalance.exporter")
# `*_created` series double every self-metric and no dashboard or rule here reads them.
disable_created_metrics()

_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class TargetStats:
    """The target's self-metrics, kept in unregistered prometheus-client objects."""

    def __init__(self) -> None:
        self.call_duration = Histogram(
            "pvebalance_exporter_api_call_duration_seconds",
            "Proxmox API call duration, by endpoint template",
            ["endpoint"],
            buckets=_CALL_BUCKETS,
            registry=None,
        )
        self.api_errors = Counter(
            "pvebalance_exporter_api_errors",
            "Failed Proxmox API calls, by endpoint template and error kind",
            ["endpoint", "kind"],
            registry=None,
        )
        self.node_errors = Counter(
            "pvebalance_exporter_node_errors",
            "Scrapes in which a node's status call failed",
            ["id"],
            registry=None,
        )

    def observe(self, endpoint: str, seconds: float, error: ApiError | None) -> None:
        self.call_duration.labels(endpoint).observe(seconds)
        if error is not None:
            self.count_error(endpoint, error.kind)

    def count_error(self, endpoint: str, kind: ErrorKind) -> None:
        self.api_errors.labels(endpoint, kind.value).inc()

    def families(self) -> Iterator[Metric]:
        for metric in (self.call_duration, self.api_errors, self.node_errors):
            yield from metric.collect()


@dataclass
class PendingCalls:
    futures: dict[Future[Any], Call] = field(default_factory=dict)
    answers: dict[CallKey, Any] = field(default_factory=dict)  # reused from the cache


class Collection:
    """One collection of a target's answer, shared by the scrapes that arrive while it runs."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self._parts: list[bytes] = []  # the text exposition, family by family; none if the collection failed
        self._text: bytes | None = None
        self._gzipped: bytes | None = None
        self._lock = threading.Lock()

    def finish_body(self, parts: list[bytes], gzipped: bytes | None) -> None:
        """The answer, and its gzip when it was compressed while being rendered (GzipStream)."""
        self._parts, self._gzipped = parts, gzipped

    @property
    def collected(self) -> bool:
        return bool(self._parts)

    def text(self) -> bytes:
        """The text exposition, joined once for the scrapes that ask for it plain (Prometheus asks
        for gzip: then the 20 MB of a 10,000-guest answer are never joined)."""
        with self._lock:
            if self._text is None:
                self._text = b"".join(self._parts)
            return self._text

    def gzipped(self, level: int) -> bytes:
        """The answer gzipped, compressed once for all the scrapes that share it."""
        with self._lock:
            if self._gzipped is None:
                self._gzipped = gzip.compress(self._text or b"".join(self._parts), compresslevel=level)
            return self._gzipped


class Collections:
    """At most one collection in flight per target; later scrapes join it."""

    def __init__(self) -> None:
        self._current: Collection | None = None
        self._lock = threading.Lock()

    def join(self) -> tuple[Collection, bool]:
        """The collection under way, or a new one; True if the caller must run it."""
        with self._lock:
            if self._current is not None:
                return self._current, False
            self._current = Collection()
            return self._current, True

    def finish(self, collection: Collection) -> None:
        with self._lock:
            if self._current is collection:
                self._current = None
        collection.done.set()


class Target:
    def __init__(self, settings: ConnectionSettings, max_workers: int) -> None:
        self.host = settings.host
        self.settings = settings
        self.stats = TargetStats()
        self.client = PveClient(settings, observer=self.stats.observe, pool_size=max_workers)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"pve-{self.host}")
        self._cache: dict[CallKey, tuple[float, Any]] = {}  # (reusable until, answer)
        self._failing: set[CallKey] = set()
        self._lock = threading.Lock()
        self.render_seconds = 0.0  # how long rendering the last answer for this target took
        self.collections = Collections()
        self.kept_texts = KeptTexts()  # the families of its last answer, reused while unchanged
        self.kept_segments = KeptSegments()  # used by one collection at a time (Collections)

    def start_calls(self, calls: Sequence[Call]) -> PendingCalls:
        """Submit `calls` to the pool (answering reusable ones from the cache) without waiting."""
        pending = PendingCalls()
        now = time.monotonic()
        for call in calls:
            cached = self._cache.get(call.key)
            if cached is not None and now < cached[0]:
                pending.answers[call.key] = cached[1]
            else:
                pending.futures[self._pool.submit(self._fetch, call)] = call
        return pending

    def finish_calls(self, pending: PendingCalls, deadline: float) -> tuple[dict[CallKey, Any], dict[CallKey, ApiError]]:
        """Wait for `pending` until `deadline`; what has not answered by then is a timeout."""
        answers = dict(pending.answers)
        failures: dict[CallKey, ApiError] = {}
        done, not_done = wait(pending.futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in done:
            call = pending.futures[future]
            try:
                answers[call.key] = future.result()
                reuse = call.reuse_for(answers[call.key])
                if reuse:
                    self._cache[call.key] = (time.monotonic() + reuse, answers[call.key])
                else:  # an answer not to reuse also replaces one that was
                    self._cache.pop(call.key, None)
            except ApiError as exc:
                failures[call.key] = exc
                if call.key in self._cache:  # a slow-changing fact: last known beats none
                    answers[call.key] = self._cache[call.key][1]
        for future in not_done:
            call = pending.futures[future]
            template = endpoint_template(call.path)
            if future.cancel():
                # Never started, so the client's observer will not count it.
                self.stats.count_error(template, ErrorKind.TIMEOUT)
            failures[call.key] = ApiError(ErrorKind.TIMEOUT, template, "no answer before the scrape deadline")
        return answers, failures

    def _fetch(self, call: Call) -> Any:
        answer = self.client.get(call.path, **call.params)  # pveapi.translate turns a too-deep answer into an ApiError
        try:
            return call.parse(answer)
        except ApiError as exc:
            self.stats.count_error(endpoint_template(call.path), exc.kind)
            raise
        except RecursionError:
            raise self._bad_answer(call, "the answer is nested too deeply to read") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError) as exc:
            # ArithmeticError: int(Infinity) and the like, which JSON from the API may carry.
            raise self._bad_answer(call, f"unexpected answer: {exc!r}") from None

    def _bad_answer(self, call: Call, message: str) -> ApiError:
        """The error to raise for an answer that cannot be read, counted."""
        template = endpoint_template(call.path)
        self.stats.count_error(template, ErrorKind.BAD_ANSWER)
        return ApiError(ErrorKind.BAD_ANSWER, template, message)

    def record(self, result: ScrapeResult) -> None:
        """Count node errors and log each failure once when it starts and once when it ends."""
        for concern, subject in result.failures:
            if concern == NODE_STATUS:
                self.stats.node_errors.labels(f"node/{subject}").inc()
        with self._lock:
            started = set(result.failures) - self._failing
            # A call not made this time (its node went offline, /cluster/resources failed)
            # is not a recovery; only a call that answered is.
            ended = {key for key in self._failing if key in result.answers and key not in result.failures}
            self._failing = (self._failing - ended) | set(result.failures)
        for key in sorted(started):
            error = result.failures[key]
            log.warning(
                "api_call_failed", cluster=self.host, concern=key[0], subject=key[1] or None,
                endpoint=error.endpoint, kind=error.kind.value, error=str(error),
            )
        for key in sorted(ended):
            log.info("api_call_recovered", cluster=self.host, concern=key[0], subject=key[1] or None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def retire(self) -> None:
        """Replaced after a reload: calls already submitted still answer their scrape, then its threads end."""
        self._pool.shutdown(wait=False)


class TargetCache:
    """Targets by (module, host), so sessions and pools live across scrapes; bounded LRU. A
    target whose module's settings changed (a reloaded config) starts afresh with the new ones."""

    def __init__(self, max_workers: int, max_targets: int = 64) -> None:
        self._max_workers = max_workers
        self._max_targets = max_targets
        self._targets: OrderedDict[tuple[str, str], Target] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, module: str, settings: ConnectionSettings) -> Target:
        key = (module, settings.host)
        with self._lock:
            target = self._targets.get(key)
            if target is not None and target.settings != settings:
                target.retire()
                target = None
            if target is None:
                target = self._targets[key] = Target(settings, self._max_workers)
                while len(self._targets) > self._max_targets:
                    self._targets.popitem(last=False)[1].close()
            self._targets.move_to_end(key)
            return target

    def close(self) -> None:
        with self._lock:
            for target in self._targets.values():
                target.close()
            self._targets.clear()
