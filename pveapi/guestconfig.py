"""What a guest's config (GET /nodes/{node}/{qemu|lxc}/{vmid}/config) says about where it may
run: its CPU type, the storages its disks sit on and how large they are there."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import values
from .errors import ConfigError

# Disk keys of qemu (ide0, scsi3, virtio1, efidisk0, tpmstate0, unused2) and lxc (rootfs, mp0).
_DISK_KEY = re.compile(r"^(ide|sata|scsi|virtio|efidisk|tpmstate|unused|mp)\d+$|^rootfs$")


@dataclass(frozen=True)
class GuestPlacementNeeds:
    cputype: str | None  # the qemu `cpu` type (`host`, `x86-64-v2-AES`, ...); None: PVE's default or a container
    storages: frozenset[str]  # storages holding its disks (not CD-ROM media)
    # Bytes of its disks per storage, from each volume's `size=` (a disk without one counts 0).
    disk_bytes: tuple[tuple[str, int], ...] = ()


def parse_guest_config(config: Any) -> GuestPlacementNeeds:
    """Read the CPU type and disk storages; what is not in the documented shape is skipped."""
    if not isinstance(config, Mapping):
        return GuestPlacementNeeds(None, frozenset())
    storages: dict[str, int] = {}
    for key, value in config.items():
        if not _DISK_KEY.match(str(key)) or not isinstance(value, str):
            continue
        volume, *options = value.split(",")
        if "media=cdrom" in options or ":" not in volume:
            continue  # `none`, a bind mount (/srv/data) or an ISO: not a disk that moves
        storage = volume.split(":", 1)[0]
        storages[storage] = storages.get(storage, 0) + _size(options, f"{key}")
    return GuestPlacementNeeds(_cputype(config.get("cpu")), frozenset(storages), tuple(sorted(storages.items())))


def _size(options: list[str], key: str) -> int:
    """A volume's `size=32G` (binary, as PVE means it; bare digits are bytes); 0 when absent or not a size."""
    size = next((o.partition("=")[2] for o in options if o.startswith("size=")), None)
    if size is None:
        return 0
    try:
        return values.size_bytes(size, f"guest config {key}.size")
    except ConfigError:
        return 0


def _cputype(value: Any) -> str | None:
    """`cpu: host,flags=+aes` or `cpu: cputype=host` -> `host`."""
    if not isinstance(value, str) or not value.strip():
        return None
    first = value.split(",")[0].strip()
    return first.partition("=")[2].strip() if first.startswith("cputype=") else first
