"""The benchmarks' command-line values, checked before any simulator starts: a bad one is
argparse's one line naming the option (exit 2), not a traceback minutes into a run."""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path


def count(text: str) -> int:
    """A whole number of at least 1 (rounds, scrapes, runs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def count_or_none(text: str) -> int:
    """A whole number of at least 0 (0: skip that part)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0 (0: skip), got {text!r}")
    return value


def counts(text: str) -> list[int]:
    """Comma-separated whole numbers of at least 1, e.g. 500,2000,10000."""
    try:
        return [count(part) for part in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected whole numbers of at least 1 separated by commas, got {text!r}") from None


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def port(text: str) -> int:
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return value


def output_file(text: str) -> Path:
    """A file the results can be written to, tried now (its folder is made if missing)."""
    path = Path(text)
    try:
        if path.exists():
            path.open("a").close()  # appends nothing: the file stays as it is until the run ends
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            tempfile.NamedTemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write results to {text!r} ({exc.strerror}): pick a writable file path") from None
    return path
