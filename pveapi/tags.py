"""Proxmox guest tags: the one place they are parsed.

/cluster/resources sends `tags` as one `;`-joined string (lowercased, sorted); PVE also
accepts `,` and spaces as separators in configs.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[;,\s]+")


def parse_tags(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset()
    return frozenset(tag.lower() for tag in _SEPARATORS.split(raw) if tag)


def tags_with_prefix(tags: frozenset[str], prefix: str) -> frozenset[str]:
    """The suffixes of every tag that starts with `prefix` (e.g. `plb_pin_` -> node names)."""
    return frozenset(tag[len(prefix):] for tag in tags if tag.startswith(prefix) and len(tag) > len(prefix))
