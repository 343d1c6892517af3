"""What a guest's config (GET /nodes/{node}/{qemu|lxc}/{vmid}/config) says about where it may
run: its CPU type and the storages its disks sit on."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Disk keys of qemu (ide0, scsi3, virtio1, efidisk0, tpmstate0, unused2) and lxc (rootfs, mp0).
_DISK_KEY = re.compile(r"^(ide|sata|scsi|virtio|efidisk|tpmstate|unused|mp)\d+$|^rootfs$")


@dataclass(frozen=True)
class GuestPlacementNeeds:
    cputype: str | None  # the qemu `cpu` type (`host`, `x86-64-v2-AES`, ...); None: PVE's default or a container
    storages: frozenset[str]  # storages holding its disks (not CD-ROM media)


def parse_guest_config(config: Any) -> GuestPlacementNeeds:
    """Read the CPU type and disk storages; what is not in the documented shape is skipped."""
    if not isinstance(config, Mapping):
        return GuestPlacementNeeds(None, frozenset())
    storages = set()
    for key, value in config.items():
        if not _DISK_KEY.match(str(key)) or not isinstance(value, str):
            continue
        volume, *options = value.split(",")
        if "media=cdrom" in options or ":" not in volume:
            continue  # `none`, a bind mount (/srv/data) or an ISO: not a disk that moves
        storages.add(volume.split(":", 1)[0])
    return GuestPlacementNeeds(_cputype(config.get("cpu")), frozenset(storages))


def _cputype(value: Any) -> str | None:
    """`cpu: host,flags=+aes` or `cpu: cputype=host` -> `host`."""
    if not isinstance(value, str) or not value.strip():
        return None
    first = value.split(",")[0].strip()
    return first.partition("=")[2].strip() if first.startswith("cputype=") else first
