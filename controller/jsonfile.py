"""The controller's small JSON files (loop state, outcomes, drains): read whole, replaced atomically.

They sit side by side (`run.state_file` and the files named after it), so a file that cannot
be read or written says so in one line, and what to do.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pveapi.errors import ConfigError


def read_json(path: Path, what: str, lost: str) -> Any:
    """The file's JSON, None when there is no file; a file that cannot be read is refused
    (rather than forgotten) with what removing it loses."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} {path}: unreadable ({exc}); fix or remove it ({lost})") from None


def write_json(path: Path, payload: Mapping[str, Any], what: str) -> None:
    """Write a temporary file, sync it, rename it over `path`, sync the directory: a crash or a
    power loss leaves the old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(payload, indent=1) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise ConfigError(unwritable(path, exc, what)) from None


def unwritable(path: Path, exc: OSError, what: str) -> str:
    return (f"{what} {path}: cannot write it ({exc.strerror or exc}); make {path.parent} writable "
            "for this user or set run.state_file")
