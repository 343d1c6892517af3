"""Unit tests of the shared Proxmox layer's parsing and settings (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pveapi.client import endpoint_template
from pveapi.errors import ApiError, ConfigError, ErrorKind
from pveapi.inventory import parse_resources
from pveapi.settings import ConnectionSettings
from pveapi.tags import parse_tags, tags_with_prefix


def test_tags_split_on_every_separator_pve_accepts() -> None:
    assert parse_tags("prod;Web,db  x") == {"prod", "web", "db", "x"}
    assert parse_tags(None) == frozenset()
    assert tags_with_prefix(parse_tags("plb_pin_pve1;plb_pin_;web"), "plb_pin_") == {"pve1"}


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/nodes/pve1/status", "/nodes/{node}/status"),
        ("nodes/pve2/qemu/100/status/current", "/nodes/{node}/qemu/{vmid}/status/current"),
        ("/nodes/pve1/tasks/UPID:pve1:0002A1B3:01C3D4E5:68D7279C:qmigrate:100:root@pam:/status",
         "/nodes/{node}/tasks/{upid}/status"),
        ("/pools/prod", "/pools/{poolid}"),
        ("/cluster/resources", "/cluster/resources"),
    ],
)
def test_endpoint_templates_have_bounded_cardinality(path: str, template: str) -> None:
    assert endpoint_template(path) == template


def test_secret_from_file_never_shows_in_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("5f3c-very-secret\n")
    settings = ConnectionSettings.from_mapping(
        {"host": "pve", "user": "root@pam", "token_name": "t", "token_value_file": str(secret_file)}, "proxmox", env={}
    )
    assert settings.token_value is not None and settings.token_value.reveal() == "5f3c-very-secret"
    assert "5f3c" not in repr(settings) and "5f3c" not in str(settings.token_value)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"host": "pve", "user": "root", "password": "x"}, "must name a realm"),
        ({"host": "pve", "user": "root@pam", "token_name": "t"}, "no token secret"),
        ({"host": "pve", "user": "root@pam", "token_name": "t", "token_value_env": "NOPE"}, "NOPE is not set"),
        ({"host": "pve", "user": "root@pam", "password": "x", "timeout": "fast"}, "timeout: expected a duration such as 30s"),
        ({"host": "pve", "user": "root@pam", "password": "x", "tokn_name": "t"}, "unknown key(s) tokn_name"),
    ],
)
def test_bad_settings_name_the_problem(block: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ConnectionSettings.from_mapping(block, "proxmox", env={})


def test_resources_parse_into_typed_inventory() -> None:
    inventory = parse_resources([
        {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online", "cpu": 0.5, "maxcpu": 8,
         "mem": 1024, "maxmem": 4096},
        {"id": "node/pve3", "type": "node", "node": "pve3", "status": "offline", "maxcpu": 8, "maxmem": 4096},
        {"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "name": "web01", "status": "running",
         "template": 0, "cpu": 0.25, "maxcpu": 4, "mem": 512, "maxmem": 1024, "tags": "prod;web",
         "lock": "migrate", "hastate": "started"},
        {"id": "/pool/prod", "type": "pool", "pool": "prod"},
    ])
    assert [n.name for n in inventory.online_nodes] == ["pve1"]
    guest = inventory.guest(100)
    assert guest is not None and guest.cpu_cores_used == 1.0 and guest.tags == {"prod", "web"}
    assert guest.lock == "migrate" and guest.ha_managed and guest.sid == "vm:100"
    assert inventory.pools == ("prod",)


def test_malformed_resources_name_the_entry() -> None:
    with pytest.raises(ApiError) as caught:
        parse_resources([{"id": "qemu/7", "type": "qemu", "vmid": "seven", "node": "pve1"}])
    assert caught.value.kind is ErrorKind.BAD_ANSWER and "qemu/7" in str(caught.value)
