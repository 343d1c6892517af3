"""How to reach one Proxmox VE cluster, read from config with secrets kept out of it.

The same block is used by the exporter (one per module) and the controller (`proxmox:`):

    host: pve1.example.com        # may carry :port; the API is always https
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
        unknown = sorted(set(data) - _KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KNOWN_KEYS))}")
        host = _required_str(data, "host", where)
        user = _required_str(data, "user", where)
        if "@" not in user:
            raise ConfigError(f"{where}.user: {user!r} must name a realm, e.g. root@pam or balancer@pve")
        token_name = data.get("token_name")
        token_value = read_secret(data, "token_value", where, env, "PVE_TOKEN_VALUE")
        password = read_secret(data, "password", where, env, "PVE_PASSWORD")
        if token_name is not None and token_value is None:
            raise ConfigError(
                f"{where}: token_name is set but no token secret was found; set token_value_file, "
                "token_value_env or the PVE_TOKEN_VALUE environment variable"
            )
        if token_name is None and password is None:
            raise ConfigError(f"{where}: set token_name with a token secret (preferred) or a password")
        verify_ssl = data.get("verify_ssl", True)
        if not isinstance(verify_ssl, (bool, str)):
            raise ConfigError(f"{where}.verify_ssl: must be true, false or the path of a CA bundle")
        if isinstance(verify_ssl, str) and not Path(verify_ssl).is_file():
            raise ConfigError(f"{where}.verify_ssl: CA bundle {verify_ssl} does not exist")
        timeout = data.get("timeout", 5)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{where}.timeout: must be a positive number of seconds, got {timeout!r}")
        return cls(
            host=host,
            user=user,
            token_name=str(token_name) if token_name is not None else None,
            token_value=token_value if token_name is not None else None,
            password=password if token_name is None else None,
            verify_ssl=verify_ssl,
            timeout=float(timeout),
        )

    def secrets(self) -> tuple[str, ...]:
        """The secret values, so output can be checked never to contain them."""
        return tuple(s.reveal() for s in (self.token_value, self.password) if s is not None)


def _required_str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: required, as a non-empty string")
    return value.strip()


def read_secret(
    data: Mapping[str, Any], key: str, where: str, env: Mapping[str, str], fallback_env: str | None = None
) -> Secret | None:
    """The secret `key` of a config block: `<key>_file`, `<key>_env`, `<key>`, then `fallback_env`."""
    path = data.get(f"{key}_file")
    if path is not None:
        try:
            value = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.{key}_file: cannot read {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}.{key}_file: {path} is empty")
        return Secret(value)
    var = data.get(f"{key}_env")
    if var is not None:
        if not env.get(str(var)):
            raise ConfigError(f"{where}.{key}_env: environment variable {var} is not set or empty")
        return Secret(env[str(var)])
    if data.get(key) is not None:
        return Secret(str(data[key]))
    if fallback_env and env.get(fallback_env):
        return Secret(env[fallback_env])
    return None
