"""Small helpers for tests and benchmarks that run real processes."""

from __future__ import annotations

import subprocess

from demoloop.processes import free_port

__all__ = ["free_port", "stop_process"]


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
