"""Small helpers for tests and benchmarks that run real processes."""

from __future__ import annotations

import re
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


_PROGRESS_LINE = re.compile(r"^[a-z][a-z :-]*: .*\belapsed\b")


def without_progress(stderr: str) -> list[str]:
    """stderr's lines less the progress lines a slow step prints (pveapi/progress.py): on a busy
    machine a plan may take long enough to report itself, which is not an error."""
    return [line for line in stderr.splitlines() if line.strip() and not _PROGRESS_LINE.match(line)]
