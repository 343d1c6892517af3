"""How to reach one Proxmox VE cluster, read from config with secrets kept out of it.

The same block is used by the exporter (one per module) and the controller (`proxmox:`):

    host: pve1.example.com        # may carry :port, or be pasted from the browser:
                                  # https://pve1.example.com:8006/ (the API is always https)
    user: pvebalance@pve
    token_name: balancer
    token_value_file: /run/secrets/pve_token   # or token_value_env: MY_VAR
    verify_ssl: true                           # or a CA bundle path
    timeout: 5

Secrets are looked up in this order: `*_file`, `*_env`, the literal value, then the
environment variables `PVE_TOKEN_VALUE` / `PVE_PASSWORD`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import values
from .errors import ConfigError


class Secret:
    """A string that never shows itself in repr, str, logs or error messages."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_KNOWN_KEYS = {
    "host", "user", "token_name", "token_value", "token_value_file", "token_value_env",
    "password", "password_file", "password_env", "verify_ssl", "timeout",
}


@dataclass(frozen=True)
class ConnectionSettings:
    host: str
    user: str
    token_name: str | None = None
    token_value: Secret | None = field(default=None, repr=False)
    password: Secret | None = field(default=None, repr=False)
    verify_ssl: bool | str = True
    timeout: float = 5.0

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], where: str, env: Mapping[str, str] | None = None
    ) -> ConnectionSettings:
        """Build settings from a config block; `where` names the block in error messages."""
        env = os.environ if env is None else env
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping with host, user and a token")
        values.reject_unknown(data, _KNOWN_KEYS, where)
        host = api_host(data.get("host"), f"{where}.host")
        user = values.text(data.get("user"), f"{where}.user")
        if "@" not in user:
            raise ConfigError(f"{where}.user: {user!r} must name a realm, e.g. root@pam or balancer@pve")
        token_name = values.text(data["token_name"], f"{where}.token_name") if data.get("token_name") is not None else None
        token_value = read_secret(data, "token_value", where, env, "PVE_TOKEN_VALUE")
        password = read_secret(data, "password", where, env, "PVE_PASSWORD")
        if token_name is not None and token_value is None:
            raise ConfigError(
                f"{where}: token_name is set but no token secret was found; set token_value_file, "
                "token_value_env or the PVE_TOKEN_VALUE environment variable"
            )
        if token_name is None and password is None:
            raise ConfigError(f"{where}: set token_name with a token secret (preferred) or a password")
        tls = verify_ssl(data.get("verify_ssl", True), f"{where}.verify_ssl")
        if isinstance(tls, str) and not Path(tls).is_file():
            raise ConfigError(f"{where}.verify_ssl: CA bundle {tls} does not exist")
        return cls(
            host=host,
            user=user,
            token_name=token_name,
            token_value=token_value if token_name is not None else None,
            password=password if token_name is None else None,
            verify_ssl=tls,
            timeout=values.duration(data.get("timeout", 5), f"{where}.timeout", MAX_TIMEOUT),
        )

    def secrets(self) -> tuple[str, ...]:
        """The secret values, so output can be checked never to contain them."""
        return tuple(s.reveal() for s in (self.token_value, self.password) if s is not None)


MAX_TIMEOUT = 600.0  # seconds one API call may take: beyond this a value is a typo
_API_PATHS = ("", "/", "/api2/json", "/api2/json/")


def api_host(value: Any, where: str) -> str:
    """`host[:port]` for proxmoxer, also from a URL pasted from the browser.

    `https://pve1:8006/` and `pve1:8006` both give `pve1:8006`; an IPv6 address keeps its
    brackets. Anything else a URL can carry (http, user@, a path, ?query, #fragment) is refused:
    the API token would be sent wherever it pointed.
    """
    given = values.text(value, where)
    raw = given
    if "://" not in raw:
        bare_ipv6 = raw.count(":") > 1 and not raw.startswith("[")
        raw = f"https://[{raw}]" if bare_ipv6 else f"https://{raw}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        parts, port = None, None
    expected = "a host name or address, optionally with :port or as https://host:port/"
    if (
        parts is None or parts.scheme != "https" or not parts.hostname or parts.username is not None
        or any(c.isspace() for c in raw) or parts.path not in _API_PATHS or "#" in raw or "?" in raw
    ):
        raise ConfigError(f"{where}: expected {expected}, got {values.found(given)}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host if port is None else f"{host}:{values.port(port, where + ' port')}"


def verify_ssl(value: Any, where: str) -> bool | str:
    """`verify_ssl`: true, false, or the path of a CA bundle."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ConfigError(f"{where}: expected true, false or the path of a CA bundle, got {values.found(value)}")


def read_secret(
    data: Mapping[str, Any], key: str, where: str, env: Mapping[str, str], fallback_env: str | None = None
) -> Secret | None:
    """The secret `key` of a config block: `<key>_file`, `<key>_env`, `<key>`, then `fallback_env`."""
    if data.get(f"{key}_file") is not None:
        path = values.text(data[f"{key}_file"], f"{where}.{key}_file")
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
            reason = exc.strerror if isinstance(exc, OSError) else "not a path"
            raise ConfigError(f"{where}.{key}_file: cannot read {values.found(path)}: {reason}") from None
        if not value:
            raise ConfigError(f"{where}.{key}_file: {path} is empty")
        return Secret(value)
    if data.get(f"{key}_env") is not None:
        var = values.text(data[f"{key}_env"], f"{where}.{key}_env")
        if not env.get(var):
            raise ConfigError(f"{where}.{key}_env: environment variable {var} is not set or empty")
        return Secret(env[var])
    if data.get(key) is not None:
        if not isinstance(data[key], str) or not data[key].strip():
            raise ConfigError(f"{where}.{key}: expected a non-empty string (not shown: it is a secret)")
        return Secret(data[key].strip())
    if fallback_env and env.get(fallback_env):
        return Secret(env[fallback_env])
    return None
