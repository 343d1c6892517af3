"""The controller's one YAML configuration file, parsed and checked in one place.

Every value is validated here so that a mistake is one line naming the key and what to do,
before anything talks to the cluster. Secrets (API token, Prometheus credentials, webhook
token) come from files or the environment and are kept as `Secret`s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from controller.advisor.settings import AdvisorSettings, parse_advisor
from controller.promql import PrometheusSettings, Statistic
from controller.windows import MigrationWindows, parse_windows
from planner.model import DEFAULT_WINDOW
from planner.policy import Policy
from planner.rules import RuleSet, load_rules
from pveapi import values
from pveapi.errors import ConfigError
from pveapi.settings import ConnectionSettings, Secret, read_secret, verify_ssl

WINDOWS = ("1h", "6h", "24h", "7d")
Automation = Literal["manual", "automatic"]
Role = Literal["viewer", "operator"]

@dataclass(frozen=True)
class ApplySettings:
    max_in_flight: int = 2  # migrations running at once, cluster-wide
    max_in_flight_per_node: int = 1  # counted on both the source and the target node
    max_consecutive_failures: int = 3
    task_timeout: float = 1800.0
    lxc_shutdown_timeout: int = 180  # seconds a container gets to stop before it restarts elsewhere
    poll_interval: float = 2.0


def default_state_file() -> Path:
    """`state.json` in systemd's $STATE_DIRECTORY when the service manager sets one (the
    package's unit does, with StateDirectory=pvebalance), else in /var/lib/pvebalance."""
    directory = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory or "/var/lib/pvebalance") / "state.json"


@dataclass(frozen=True)
class RunSettings:
    interval: float = 300.0
    automation: Automation = "manual"
    hold_time: float = 900.0  # the imbalance must stay above the trigger this long before balancing
    cooldown: float = 3600.0  # no guest moves twice within this
    state_file: Path = field(default_factory=lambda: default_state_file())
    listen: str = "127.0.0.1:9883"
    webhook_token: Secret | None = field(default=None, repr=False)
    fallback_to_live: bool = False  # act on live API figures when Prometheus is down or stale
    lease: Literal["cluster", "local"] = "cluster"  # one migrating controller per cluster (controller/lease.py)
    lease_pool: str = "pvebalance-lease"
    lease_ttl: float = 60.0
    # After each applied plan, its outcome is measured this long after (controller/outcomes.py).
    outcome_horizons: tuple[float, ...] = (300.0, 3600.0, 86400.0)
    outcomes_kept: int = 20
    windows: MigrationWindows | None = None  # when automatic mode may start migrations (None: always)

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


# The longest each duration may be: beyond these a value is a typo, not a choice.
_PROMETHEUS_TIMEOUT = values.HOUR
_MAX_DATA_AGE = values.DAY
_TASK_TIMEOUT = 7 * values.DAY  # a migration copying local disks can take hours, not weeks
_SHUTDOWN_TIMEOUT = values.HOUR
_POLL_INTERVAL = 5 * values.MINUTE
_INTERVAL = values.DAY
_HOLD_TIME = 7 * values.DAY
_COOLDOWN = 30 * values.DAY
_LEASE_TTL = values.HOUR
_MAX_IN_FLIGHT = 64


@dataclass(frozen=True)
class ApiToken:
    """A bearer token of the controller's HTTP API: `viewer` may read, `operator` may also act."""

    name: str  # who, in logs and metrics; never the token itself
    role: Role
    secret: Secret = field(repr=False)


@dataclass(frozen=True)
class ApiSettings:
    tokens: tuple[ApiToken, ...] = ()  # none: the /api/v1 endpoints answer 401 to everyone
    cors_origins: tuple[str, ...] = ()  # browser origins (the Grafana URL) allowed to call the API


@dataclass(frozen=True)
class Config:
    proxmox: ConnectionSettings
    prometheus: PrometheusSettings | None
    policy: Policy
    rules: RuleSet
    apply: ApplySettings
    run: RunSettings
    source: str = "<config>"
    ai: AdvisorSettings | None = None  # the optional AI advisor (docs/advisor.md); None: off
    api: ApiSettings = ApiSettings()

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, so tests and output checks can prove none leaks."""
        extra = [self.run.webhook_token, self.ai.api_key if self.ai is not None else None,
                 *(t.secret for t in self.api.tokens)]
        if self.prometheus is not None:
            extra += [self.prometheus.bearer_token, self.prometheus.password]
        return self.proxmox.secrets() + tuple(s.reveal() for s in extra if s is not None)


_TOP_KEYS = {"proxmox", "prometheus", "policy", "rules", "rules_file", "apply", "run", "ai", "api"}
_API_KEYS = {"tokens", "cors_origins"}
_API_TOKEN_KEYS = {"name", "role", "token_file", "token_env"}  # never inline: secrets come from files or env
_PROM_KEYS = {
    "url", "window", "statistic", "max_data_age", "bearer_token", "bearer_token_file", "bearer_token_env",
    "username", "password", "password_file", "password_env", "headers", "verify_ssl", "timeout",
}
_APPLY_KEYS = {
    "max_in_flight", "max_in_flight_per_node", "max_consecutive_failures", "task_timeout",
    "lxc_shutdown_timeout", "poll_interval",
}
_RUN_KEYS = {
    "interval", "automation", "hold_time", "cooldown", "state_file", "listen",
    "webhook_token", "webhook_token_file", "webhook_token_env", "fallback_to_live", "lease", "lease_pool", "lease_ttl",
    "outcome_horizons", "outcomes_kept",
    "windows",
}
# A pool name PVE accepts at the top level (pve-access-control's verify_poolname, and a leading letter).
_POOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]*$")


def load_config(
    path: str | Path, env: Mapping[str, str] | None = None, hint: str = "pass --config or set PVEBALANCE_CONFIG"
) -> Config:
    """Read and check the config file at `path`; raises ConfigError naming the first problem.
    `hint` says what to do when it cannot be read, in the terms the user chose it in."""
    path = Path(path)
    data = _read_yaml(path, "config file", hint=hint)
    return parse_config(data, str(path), base=path.parent, env=env)


def parse_config(
    data: Any, source: str, base: Path = Path("."), env: Mapping[str, str] | None = None
) -> Config:
    env = os.environ if env is None else env
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with proxmox, prometheus, policy, rules, apply and run")
    values.reject_unknown(data, _TOP_KEYS, source)
    if "proxmox" not in data:
        raise ConfigError(f"{source}: the proxmox block is required (host, user, token_name, token_value_file)")
    rules = load_rules(data.get("rules") or {}, f"{source}: rules")
    if data.get("rules_file") is not None:
        rules_path = base / str(data["rules_file"])
        rules = rules.merge(load_rules(_read_yaml(rules_path, "rules file") or {}, str(rules_path)))
    return Config(
        proxmox=ConnectionSettings.from_mapping(_files_from(data["proxmox"], base), f"{source}: proxmox", env=env),
        prometheus=_prometheus(_files_from(data.get("prometheus"), base), f"{source}: prometheus", env),
        policy=Policy.from_mapping(data.get("policy") or {}, f"{source}: policy"),
        rules=rules,
        apply=_apply(values.mapping(data.get("apply"), f"{source}: apply"), f"{source}: apply"),
        run=_run(_files_from(values.mapping(data.get("run"), f"{source}: run"), base), f"{source}: run", base, env),
        source=source,
        ai=parse_advisor(_files_from(data.get("ai"), base), f"{source}: ai", env, WINDOWS),
        api=_api(values.mapping(data.get("api"), f"{source}: api"), f"{source}: api", base, env),
    )


def _files_from(block: Any, base: Path) -> Any:
    """Secret files named relative to the config file's directory, like rules_file and state_file."""
    if not isinstance(block, Mapping):
        return block
    return {k: str(base / v) if k.endswith("_file") and isinstance(v, str) else v for k, v in block.items()}


def _read_yaml(path: Path, what: str, hint: str = "") -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror}){' - ' + hint if hint else ''}") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{what} {path}: nested too deeply to be a {what}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{what} {path}{line}: {problem}") from None


def _prometheus(data: Any, where: str, env: Mapping[str, str]) -> PrometheusSettings | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping with at least url")
    values.reject_unknown(data, _PROM_KEYS, where)
    url = data.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(
            f"{where}.url: expected http(s)://host:port of a Prometheus-compatible query API, got {values.found(url)}"
        )
    window = values.choice(data.get("window", DEFAULT_WINDOW), f"{where}.window", WINDOWS)
    headers = values.mapping(data.get("headers"), f"{where}.headers")
    if not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers: expected a mapping of header name to string value")
    username = data.get("username")
    password = read_secret(data, "password", where, env, "PVEBALANCE_PROMETHEUS_PASSWORD")
    if username is not None and password is None:
        raise ConfigError(f"{where}: username is set but no password; set password_file or password_env")
    return PrometheusSettings(
        url=url.rstrip("/"),
        window=window,
        statistic=Statistic.parse(data.get("statistic", "avg"), f"{where}.statistic"),
        max_data_age=values.duration(data.get("max_data_age", 300), f"{where}.max_data_age", _MAX_DATA_AGE),
        bearer_token=read_secret(data, "bearer_token", where, env, "PVEBALANCE_PROMETHEUS_TOKEN"),
        username=values.text(username, f"{where}.username") if username is not None else None,
        password=password if username is not None else None,
        headers={str(k): v for k, v in headers.items()},
        verify_ssl=verify_ssl(data.get("verify_ssl", True), f"{where}.verify_ssl"),
        timeout=values.duration(data.get("timeout", 10), f"{where}.timeout", _PROMETHEUS_TIMEOUT),
    )


def _apply(data: Mapping[str, Any], where: str) -> ApplySettings:
    values.reject_unknown(data, _APPLY_KEYS, where)
    d = ApplySettings()

    def read(key: str, reader: Any, *bounds: Any) -> Any:
        return reader(data.get(key, getattr(d, key)), f"{where}.{key}", *bounds)

    return ApplySettings(
        max_in_flight=read("max_in_flight", values.count, 1, _MAX_IN_FLIGHT),
        max_in_flight_per_node=read("max_in_flight_per_node", values.count, 1, _MAX_IN_FLIGHT),
        max_consecutive_failures=read("max_consecutive_failures", values.count, 1, 1000),
        task_timeout=read("task_timeout", values.duration, _TASK_TIMEOUT),
        lxc_shutdown_timeout=int(read("lxc_shutdown_timeout", values.duration, _SHUTDOWN_TIMEOUT)),
        poll_interval=read("poll_interval", values.duration, _POLL_INTERVAL),
    )


def _run(data: Mapping[str, Any], where: str, base: Path, env: Mapping[str, str]) -> RunSettings:
    values.reject_unknown(data, _RUN_KEYS, where)
    d = RunSettings()
    automation = data.get("automation", d.automation)
    if automation not in ("manual", "automatic"):
        raise ConfigError(
            f"{where}.automation: must be manual (plan only) or automatic (migrate), got {values.found(automation)}"
        )
    listen = values.text(data.get("listen", d.listen), f"{where}.listen")
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}", listen):
        raise ConfigError(f"{where}.listen: expected host:port such as 127.0.0.1:9883, got {listen!r}")
    # 0 asks the system for a free port (the address taken is logged): for tests and one-off runs
    values.count(int(listen.rpartition(":")[2]), f"{where}.listen port", 0, 65535)
    state_file = Path(values.text(data.get("state_file", str(d.state_file)), f"{where}.state_file"))
    lease = data.get("lease", d.lease)
    if lease not in ("cluster", "local"):
        raise ConfigError(
            f"{where}.lease: must be cluster (a lease in the Proxmox cluster) or local (only the lock file: "
            f"you run one controller), got {values.found(lease)}"
        )
    lease_pool = values.text(data.get("lease_pool", d.lease_pool), f"{where}.lease_pool")
    if not _POOL_NAME.match(lease_pool):
        raise ConfigError(f"{where}.lease_pool: {lease_pool!r} is not a Proxmox pool name (a letter, then letters, digits, . - _)")
    return RunSettings(
        interval=values.duration(data.get("interval", d.interval), f"{where}.interval", _INTERVAL),
        automation=automation,
        hold_time=values.duration(data.get("hold_time", d.hold_time), f"{where}.hold_time", _HOLD_TIME, zero=True),
        cooldown=values.duration(data.get("cooldown", d.cooldown), f"{where}.cooldown", _COOLDOWN, zero=True),
        state_file=state_file if state_file.is_absolute() else base / state_file,
        listen=listen,
        webhook_token=read_secret(data, "webhook_token", where, env, "PVEBALANCE_WEBHOOK_TOKEN"),
        fallback_to_live=values.flag(data.get("fallback_to_live", d.fallback_to_live), f"{where}.fallback_to_live"),
        lease=lease,
        lease_pool=lease_pool,
        lease_ttl=values.duration(data.get("lease_ttl", d.lease_ttl), f"{where}.lease_ttl", _LEASE_TTL),
        outcome_horizons=_durations(data.get("outcome_horizons", list(d.outcome_horizons)), f"{where}.outcome_horizons"),
        outcomes_kept=values.count(data.get("outcomes_kept", d.outcomes_kept), f"{where}.outcomes_kept", low=1, high=10_000),
        windows=parse_windows(data.get("windows"), f"{where}.windows"),
    )


def _durations(value: Any, where: str) -> tuple[float, ...]:
    """A list of durations, shortest first, each once."""
    if not isinstance(value, list) or not value or len(value) > 16:
        raise ConfigError(f"{where}: expected a list of up to 16 durations such as [5m, 1h, 24h], got {values.found(value)}")
    return tuple(sorted({values.duration(item, f"{where}[{i}]") for i, item in enumerate(value)}))


def _api(data: Mapping[str, Any], where: str, base: Path, env: Mapping[str, str]) -> ApiSettings:
    values.reject_unknown(data, _API_KEYS, where)
    entries = data.get("tokens") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}.tokens: expected a list of {{name, role, token_file or token_env}}")
    tokens: list[ApiToken] = []
    for i, raw in enumerate(entries):
        at = f"{where}.tokens[{i}]"
        entry = _files_from(values.mapping(raw, at), base)
        values.reject_unknown(entry, _API_TOKEN_KEYS, at)
        name = values.name_list(entry.get("name"), f"{at}.name")
        role = entry.get("role")
        if len(name) != 1 or role not in ("viewer", "operator"):
            raise ConfigError(f"{at}: needs a name and a role, viewer (read) or operator (read and act), got {dict(entry)!r}")
        secret = read_secret(entry, "token", at, env)
        if secret is None:
            raise ConfigError(f"{at}: set token_file or token_env (the token itself never goes in the config)")
        if any(t.name == name[0] for t in tokens):
            raise ConfigError(f"{at}.name: {name[0]!r} is used twice; each token needs its own name")
        tokens.append(ApiToken(name[0], role, secret))
    origins = values.name_list(data.get("cors_origins") or [], f"{where}.cors_origins")
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"{where}.cors_origins: {origin!r} is not an origin such as http://grafana.example:3000 (no path)")
    return ApiSettings(tuple(tokens), origins)
