"""Shared fixtures: a running simulator for any test that needs a Proxmox VE cluster."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests.support.sim import RunningSimulator, running_simulator


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    """The `demo` scenario at 60x time on a free port (see tests/support/sim.py)."""
    with running_simulator("demo", time_scale=60) as sim:
        yield sim


@pytest.fixture(autouse=True)
def _structlog_config_per_test() -> Iterator[None]:
    """A CLI's main() run in-process configures structlog globally (e.g. level `warning`);
    restore the configuration after each test so it cannot hide later tests' log events."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# Markers by where a test lives, so `-m "not package and not stack"` picks the quick ones.
_MARKERS_BY_PATH = {
    "tests/package/": "package",
    "tests/stack/": "stack",
    "tests/docs/": "docs",
    "tests/controller/test_run_process.py": "process",
    "tests/controller/test_lease.py": "process",
    "tests/exporter/test_secrets_and_cli.py": "process",
}


# The files that take longest, longest first (from `--durations=0`: minutes for the package
# build and the docs' blocks, a minute or more for the others). pytest-xdist hands out files
# in collection order when scripts/test.sh passes --no-loadscope-reorder (its own order puts
# the files with most tests first, which ran these last and kept one worker busy long after
# the others had finished).
_LONGEST_FIRST = (
    "tests/package/test_deb.py",
    "tests/docs/",
    "tests/controller/test_advisor.py",
    "tests/controller/test_api.py",
    "tests/stack/",
    "tests/controller/test_cli.py",
    "tests/controller/test_lease.py",
    "tests/sim/test_cli_inputs.py",
    "tests/controller/test_drain.py",
    "tests/controller/test_apply.py",
    "tests/planner/test_properties.py",
    "tests/controller/test_run.py",
    "tests/controller/test_run_process.py",
    "tests/controller/test_bwlimit.py",
    "tests/controller/test_outcomes.py",
)


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    return next((rank for rank, prefix in enumerate(_LONGEST_FIRST) if path.startswith(prefix)), len(_LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_start_rank)  # stable: files and tests keep their order otherwise
    for item in items:
        path = item.nodeid.split("::")[0]
        for prefix, marker in _MARKERS_BY_PATH.items():
            if path.startswith(prefix):
                item.add_marker(marker)
