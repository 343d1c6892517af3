"""The exporter's config file: named modules of credentials, in prometheus-pve-exporter's layout.

    default:                       # module name, chosen with /pve?module=default
      host: pve1.example.com       # target of /metrics (default: localhost)
      user: monitor@pve
      token_name: exporter
      token_value_file: /etc/pvebalance/exporter.token
      verify_ssl: /etc/pvebalance/pve-root-ca.pem
      timeout: 4
      targets: [pve1.example.com, "pve*.example.com"]   # what /pve?target= may name

Every key except `targets` is a `pveapi.settings.ConnectionSettings` key, so secrets come from
`*_file`, `*_env` or the PVE_TOKEN_VALUE / PVE_PASSWORD environment variables. Without a file,
the environment alone (PVE_USER, PVE_HOST, PVE_TOKEN_NAME, PVE_TOKEN_VALUE, PVE_VERIFY_SSL)
makes a `default` module, as prometheus-pve-exporter does.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from pveapi.errors import ConfigError
from pveapi.settings import ConnectionSettings, api_host

DEFAULT_MODULE = "default"
DEFAULT_HOST = "localhost"  # the exporter running on a PVE node, as prometheus-pve-exporter assumes
_EXPORTER_KEYS = {"targets"}
# A DNS name or IPv4 address; IPv6 comes in brackets and is checked by urlsplit.
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def target_host(target: str) -> str | None:
    """`HOST` or `HOST:PORT` in canonical (lower-case) form, or None for anything else.

    A target is only a host and a port: userinfo (`pve@127.0.0.1`), a path, query or fragment
    would let `pve*.example.com` match a string that sends the token somewhere else. The host is
    read as `proxmox.host` is (pveapi.settings.api_host); a target must already be in the form
    it gives back, so no scheme or path is taken either.
    """
    try:
        host = api_host(target, "target")
    except ConfigError:
        return None
    name = None if host.startswith("[") else host.rsplit(":", 1)[0]
    if name is not None and not _HOST_NAME.fullmatch(name):
        return None
    return host if host == target.lower() else None


@dataclass(frozen=True)
class Module:
    name: str
    settings: ConnectionSettings
    targets: tuple[str, ...]  # glob patterns /pve?target= may match, besides settings.host

    def allowed_target(self, target: str) -> str:
        """`target` as a host to scrape, if this module allows it; else one ConfigError line.

        The token travels to whatever host is named, so only configured hosts may be scraped,
        and the globs are matched against the parsed host and port alone.
        """
        host = target_host(target)
        if host is None:
            raise ConfigError(f"target {target!r} is not a host name or HOST:PORT; nothing else may follow the host")
        if host != self.settings.host.lower() and not any(fnmatchcase(host, p.lower()) for p in self.targets):
            raise ConfigError(f"target {target!r} is not allowed by module {self.name!r}; add it to the module's `targets`")
        return host

    def settings_for(self, target: str) -> ConnectionSettings:
        return dataclasses.replace(self.settings, host=target)


@dataclass(frozen=True)
class ExporterConfig:
    modules: Mapping[str, Module]

    @property
    def default_module(self) -> Module:
        """The `default` module, else the only one (what /metrics scrapes)."""
        if DEFAULT_MODULE in self.modules:
            return self.modules[DEFAULT_MODULE]
        return next(iter(self.modules.values()))

    def module(self, name: str | None) -> Module:
        if name is None or name == "":
            return self.default_module
        try:
            return self.modules[name]
        except KeyError:
            raise ConfigError(f"unknown module {name!r}; configured: {', '.join(sorted(self.modules))}") from None


def parse_config(data: Any, where: str, env: Mapping[str, str] | None = None) -> ExporterConfig:
    """Build the config from parsed YAML; `where` names the file in error messages."""
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{where}: expected a mapping of module names to connection blocks, e.g. `default: {{user: ...}}`")
    modules = {str(name): _module(str(name), block, f"{where}: module {name}", env) for name, block in data.items()}
    return ExporterConfig(modules=modules)


def _module(name: str, block: Any, where: str, env: Mapping[str, str] | None) -> Module:
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: expected a mapping with user and a token (or password)")
    targets = block.get("targets", [])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not all(isinstance(t, str) and t for t in targets):
        raise ConfigError(f"{where}.targets: expected a list of host names or glob patterns")
    connection = {key: value for key, value in block.items() if key not in _EXPORTER_KEYS}
    connection.setdefault("host", DEFAULT_HOST)
    settings = ConnectionSettings.from_mapping(connection, where, env)
    return Module(name=name, settings=settings, targets=tuple(targets))


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> ExporterConfig:
    """Read `path`; with no path (or a missing default path) fall back to the environment."""
    env = os.environ if env is None else env
    if path is None:
        if not env.get("PVE_USER"):
            raise ConfigError(
                "no config: pass --config.file (see docs/exporter.md) or set PVE_USER, PVE_HOST and "
                "PVE_TOKEN_NAME/PVE_TOKEN_VALUE in the environment"
            )
        return parse_config({DEFAULT_MODULE: _module_from_env(env)}, "environment", env)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, f"config file {path}", env)


def _module_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    block: dict[str, Any] = {"user": env["PVE_USER"], "host": env.get("PVE_HOST", DEFAULT_HOST)}
    if env.get("PVE_TOKEN_NAME"):
        block["token_name"] = env["PVE_TOKEN_NAME"]
    verify = env.get("PVE_VERIFY_SSL")
    if verify is not None:
        lowered = verify.strip().lower()
        block["verify_ssl"] = False if lowered in ("0", "false", "no") else True if lowered in ("1", "true", "yes") else verify
    # Secrets are picked up by ConnectionSettings from PVE_TOKEN_VALUE / PVE_PASSWORD.
    return block
