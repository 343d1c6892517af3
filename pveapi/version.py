"""The installed pvebalance version, for every program's `--version`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def version_text(prog: str) -> str:
    """`pvebalance-exporter 0.1.0`; `unknown` when run from a checkout that is not installed."""
    try:
        return f"{prog} {version('pvebalance')}"
    except PackageNotFoundError:
        return f"{prog} (version unknown: not installed; run scripts/setup.sh)"
