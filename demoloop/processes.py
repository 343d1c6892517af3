"""The child processes the demo starts, and their guaranteed end.

Every process is started through `Children` and ended by `Children.stop()` (newest first),
which the demo calls from `finally` and from its SIGTERM/SIGINT handler, so nothing it
started outlives it.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from pveapi.errors import PvebalanceError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, below the kernel's ephemeral range.

    A port the kernel hands out for port 0 may be handed to another process (a simulator, a
    client's connection) before ours binds it; one below that range is only taken by someone
    asking for it by number."""
    low = _ephemeral_low()
    for _ in range(100):
        port = random.randint(max(1024, low - 10000), low - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # the range below is crowded: any free port
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    """The first port of Linux's ephemeral range (32768 if it cannot be read)."""
    try:
        return max(2048, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]))
    except (OSError, ValueError, IndexError):
        return 32768


class Children:
    """Named child processes, each logging to its own file, all stopped by `stop()`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start `argv` with stdout and stderr in <log_dir>/<name>.log."""
        with self.log_path(name).open("ab") as log:
            try:
                process = subprocess.Popen(
                    list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches the demo, which then stops its children in order
                )
            except OSError as exc:
                raise PvebalanceError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
        self._running.append((name, process))
        return process

    def send_signal(self, name: str, signum: int) -> None:
        """Send `signum` to the running process started as `name`."""
        for started, process in self._running:
            if started == name and process.poll() is None:
                process.send_signal(signum)
                return
        raise PvebalanceError(f"{name} is not running")

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = self.log_path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str | None = None, timeout: float = 60.0) -> None:
        """End the process started as `name`, or every process (newest first); each gets
        SIGTERM and `timeout` seconds to finish before SIGKILL."""
        for started, process in reversed(list(self._running)):
            if name is not None and started != name:
                continue
            self._running.remove((started, process))
            if process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)


def http_ok(url: str) -> bool:
    """True once `url` answers 200 (a starting server refuses connections first)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_until(ready: Callable[[], bool], what: str, timeout: float,
               process: subprocess.Popen[Any] | None = None) -> None:
    """Poll `ready` until it answers True; fail early if `process` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise PvebalanceError(f"{what}: the process exited with code {process.returncode}")
        if ready():
            return
        time.sleep(0.25)
    raise PvebalanceError(f"{what}: not ready after {timeout:.0f} s")
