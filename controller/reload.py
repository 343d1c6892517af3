"""SIGHUP for `pvebalance run`: what a reload of the config file may change, and what it may not.

The loop reads the file (and the rules and secrets files it names) when the signal comes, so a
bad file is reported at once, and swaps it in between cycles, never during a migration run.
What the running process has bound (its HTTP address and tokens, its state file and lock, the
cluster lease) stays as started: a new file that changes it is refused as a whole.
"""

from __future__ import annotations

from typing import Any

from controller.config import Config
from pveapi.settings import Secret

# Bound at start: the server's socket and tokens, the lock and state files, the lease.
RESTART_ONLY_RUN = ("listen", "state_file", "lease", "lease_pool", "lease_ttl", "webhook_token")


def _comparable(value: Any) -> Any:
    return value.reveal() if isinstance(value, Secret) else value  # a Secret compares by identity


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings `new` changes that only a restart applies (empty: it may be swapped in)."""
    changed = [
        f"run.{key}" for key in RESTART_ONLY_RUN
        if _comparable(getattr(old.run, key)) != _comparable(getattr(new.run, key))
    ]

    def api(config: Config) -> Any:
        return [(t.name, t.role, t.secret.reveal()) for t in config.api.tokens], config.api.cors_origins

    if api(old) != api(new):
        changed.append("api")
    return changed
