"""tests/package: the Debian package. `package`-marked tests build it and install it into a
fresh Debian root (minutes, network to Debian's mirror and PyPI); select them with `-m package`
or leave them out with `-m "not package"`."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "package: builds the Debian package and installs it into a fresh Debian root")
