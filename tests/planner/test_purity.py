"""The planner is a pure function: nothing in planner/ may import a module that does I/O or
reads the clock, directly or through what it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PLANNER = Path(__file__).resolve().parents[2] / "planner"

# Standard-library modules the planner may use: data structures and arithmetic, nothing else.
ALLOWED_STDLIB = {
    "__future__", "collections", "dataclasses", "enum", "functools", "heapq", "itertools",
    "math", "operator", "re", "types", "typing", "statistics", "bisect", "hashlib", "json",
}
# Of our own packages, only the pure parts of pveapi (types, tag parsing, value readers, CPU model table).
ALLOWED_OWN = {"planner", "pveapi.cpumodels", "pveapi.errors", "pveapi.inventory", "pveapi.tags", "pveapi.values"}
FORBIDDEN_LOADED = {"requests", "proxmoxer", "urllib3", "socket", "http", "time", "datetime",
                    "os", "random", "threading", "subprocess", "structlog", "controller", "yaml"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pveapi import values` imports the module pveapi.values
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_every_planner_module_imports_only_pure_modules() -> None:
    offending = {}
    for path in sorted(PLANNER.rglob("*.py")):
        bad = {
            name for name in _imports(path)
            if name.split(".")[0] not in ALLOWED_STDLIB
            and not any(name == own or name.startswith(own + ".") for own in ALLOWED_OWN)
        }
        if bad:
            offending[str(path.relative_to(PLANNER.parent))] = sorted(bad)
    assert offending == {}


def test_importing_the_planner_loads_no_io_module() -> None:
    """What the planner pulls in transitively (pveapi's pure modules included) does no I/O."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import planner.framework, planner.verify, planner.report\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PLANNER.parent).stdout.split()
    loaded = {name.split(".")[0] for name in out}
    assert loaded & FORBIDDEN_LOADED == set()
    assert "planner" in loaded
