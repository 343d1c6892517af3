"""One migrating controller per cluster, visible to the whole cluster: a lease kept in a
Proxmox resource pool.

The local flock (controller/state.py) only sees controllers on one host sharing one state
file. The lease lives in the cluster itself: a pool (default `pvebalance-lease`) whose comment
names the holder and until when it holds:

    pvebalance controller lease: host=ctl1 pid=4242 id=9f1c2a7e since=2026-11-21T22:00:00Z until=2026-11-21T22:01:00Z

- Taking it: POST /pools creates the pool; PVE does that under its user.cfg lock, so of two
  controllers creating it at once exactly one succeeds (the other gets `already exists`).
- Keeping it: a thread rewrites the comment with a new `until` every third of the TTL, after
  re-reading it to make sure it is still ours; before each migration it is read again.
- Taking over: a lease whose `until` passed more than a grace (a quarter of the TTL, for clock
  skew) ago belongs to a controller that died; it is deleted and created anew, then re-read.
- Giving it back: on a clean exit (SIGTERM too) the pool is deleted if it is still ours.

Expiry compares the holder's clock with ours: keep controller hosts on NTP, as PVE nodes are.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import structlog

from controller.config import RunSettings
from controller.state import ControllerBusy
from pveapi.client import PveClient
from pveapi.errors import ApiError, ConfigError, ErrorKind

log = structlog.get_logger("pvebalance.lease")

MARK = "pvebalance controller lease:"
_FIELD = re.compile(r"(\w+)=(\S+)")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, as written in the pool's comment."""

    instance: str  # random per controller process: two in one process (tests) are told apart
    host: str
    pid: int
    since: float
    until: float

    def comment(self) -> str:
        return (f"{MARK} host={self.host} pid={self.pid} id={self.instance} "
                f"since={_iso(self.since)} until={_iso(self.until)}")

    @classmethod
    def parse(cls, comment: str) -> Holder | None:
        """None when the comment is not a lease this program wrote."""
        if not comment.startswith(MARK):
            return None
        fields = dict(_FIELD.findall(comment[len(MARK):]))
        try:
            return cls(fields["id"], fields["host"], int(fields["pid"]), _epoch(fields["since"]), _epoch(fields["until"]))
        except (KeyError, ValueError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {_iso(self.since)}, until {_iso(self.until)}"


def _says(exc: ApiError, text: str) -> bool:
    return exc.kind is ErrorKind.REFUSED and text in exc.message


class ClusterLease:
    def __init__(self, client: PveClient, pool: str, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.pool = pool
        self.ttl = ttl
        self.grace = ttl / 4
        self.clock = clock
        self.instance = secrets.token_hex(4)
        self.holder: Holder | None = None  # set while we hold it
        self.lost: str | None = None  # why we no longer hold it, once we held it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._tried = False  # we sent a create: the cluster may show our lease even if we lost track

    @property
    def held(self) -> bool:
        return self.holder is not None

    # --- reading --------------------------------------------------------------------------

    def current(self) -> Holder | None:
        """The holder the cluster shows now; None when there is no lease pool.

        Raises ConfigError when a pool of that name exists but is not a lease."""
        try:
            answer = self.client.get("/pools", poolid=self.pool)
        except ApiError as exc:
            if _says(exc, "does not exist"):
                return None
            raise
        entry = answer[0] if isinstance(answer, list) and answer and isinstance(answer[0], dict) else {}
        comment = str(entry.get("comment") or "")
        holder = Holder.parse(comment)
        if holder is None:
            raise ConfigError(
                f"pool '{self.pool}' exists but is not a pvebalance lease (comment {comment!r}); "
                "set run.lease_pool to a pool name of its own"
            )
        return holder

    def _until(self, now: float) -> float:
        # Whole seconds, as the comment writes it: the holder must not believe it holds the
        # lease a fraction of a second longer than what others read.
        return float(int(now + self.ttl))

    def expired(self, holder: Holder, now: float) -> bool:
        return now > holder.until + self.grace

    # --- taking and keeping ---------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease or raise ControllerBusy naming who holds it (or why it cannot be taken)."""
        with self._lock:
            if self.holder is not None:
                return
            now = self.clock()
            mine = Holder(self.instance, socket.gethostname(), os.getpid(), now, self._until(now))
            self._take(mine)
            confirmed = self.current()
            if confirmed is None or confirmed.instance != self.instance:
                raise ControllerBusy(self._busy(confirmed, "took the lease at the same moment"))
            self.holder, self.lost = mine, None
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)
            self._renewer.start()
        log.info("lease.acquired", pool=self.pool, until=_iso(mine.until))

    def _take(self, mine: Holder) -> None:
        self._tried = True
        for _attempt in range(3):  # a lease deleted or taken over between our calls: look again
            try:
                self.client.post("/pools", poolid=self.pool, comment=mine.comment())
                return
            except ApiError as exc:
                if not _says(exc, "already exists"):
                    raise self._cannot(exc) from None
            current = self.current()
            if current is None:
                continue
            if current.instance == self.instance:
                # Ours from an earlier attempt whose answer we never saw (a timeout, a failed
                # confirm): renew it rather than refuse ourselves as "another controller".
                try:
                    self.client.put("/pools", poolid=self.pool, comment=mine.comment())
                except ApiError as exc:
                    raise self._cannot(exc) from None
                return
            if not self.expired(current, mine.since):
                raise ControllerBusy(self._busy(current, "holds the cluster lease"))
            log.warning("lease.takeover", pool=self.pool, previous=current.describe())
            try:
                self.client.delete("/pools", poolid=self.pool)
            except ApiError as exc:
                if not _says(exc, "does not exist"):
                    raise self._cannot(exc) from None
        raise ControllerBusy(f"the controller lease (pool '{self.pool}') keeps changing hands; try again")

    def _busy(self, holder: Holder | None, what: str) -> str:
        who = holder.describe() if holder is not None else "an unknown process"
        return (f"another pvebalance controller {what} (pool '{self.pool}': {who}); only one may migrate "
                "per cluster - stop it first, or run this one in manual mode")

    def _cannot(self, exc: ApiError) -> ControllerBusy:
        return ControllerBusy(
            f"cannot take the controller lease (pool '{self.pool}'): {exc}; "
            "or set run.lease: local if only one controller ever runs against this cluster"
        )

    def confirm(self) -> str | None:
        """None while the cluster still shows our lease; otherwise why we may not migrate."""
        with self._lock:
            if self.holder is None:
                return self.lost or "the controller lease is not held"
            try:
                current = self.current()
            except (ApiError, ConfigError) as exc:
                return f"the controller lease could not be confirmed: {exc}"
            return self._check(current)

    def _check(self, current: Holder | None) -> str | None:
        """Caller holds self._lock and self.holder is set."""
        assert self.holder is not None
        if current is None or current.instance != self.instance:
            return self._lose(f"lease taken over ({current.describe()})" if current else "lease pool deleted")
        if self.clock() >= self.holder.until:
            return self._lose("lease not renewed before it ran out")
        return None

    def _lose(self, why: str) -> str:
        self.holder, self.lost = None, f"the controller lease was lost: {why}"
        self._stop.set()
        log.warning("lease.lost", pool=self.pool, reason=why)
        return self.lost

    def renew(self) -> None:
        with self._lock:
            if self.holder is None or self._check(self.current()) is not None:
                return
            renewed = replace(self.holder, until=self._until(self.clock()))
            self.client.put("/pools", poolid=self.pool, comment=renewed.comment())
            self.holder = renewed

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except (ApiError, ConfigError) as exc:
                # Keep trying: the lease stays ours until `until`; confirm() refuses after that.
                log.warning("lease.renew_failed", pool=self.pool, error=str(exc))

    def release(self) -> None:
        """Delete the lease if the cluster still shows it as ours; a failure leaves it to expire."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
            self._renewer = None
        with self._lock:
            if self.holder is None and not self._tried:
                return
            self.holder = None
            try:
                current = self.current()
                if current is None or current.instance != self.instance:
                    return
                self.client.delete("/pools", poolid=self.pool)
            except (ApiError, ConfigError) as exc:
                log.warning("lease.release_failed", pool=self.pool, error=str(exc), note="it expires by itself")
                return
        log.info("lease.released", pool=self.pool)


def cluster_lease(client: PveClient, run: RunSettings, dry_run: bool) -> ClusterLease | None:
    """The lease a migrating command must hold; None for dry runs and with `run.lease: local`."""
    if dry_run:
        return None
    if run.lease == "local":
        log.warning("lease.local", note="run.lease is local: only the lock file stops a second controller, "
                    "on this host and state file only; make sure no other controller runs against this cluster")
        return None
    return ClusterLease(client, run.lease_pool, run.lease_ttl)
