"""The configuration files the local stack writes for the programs it starts (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from planner.model import DEFAULT_WINDOW
from pveapi.errors import ConfigError

EXPORTER_JOB = "pvebalance-exporter"
CONTROLLER_JOB = "pvebalance-controller"


def _connection(api_host: str, user: str, token_name: str, token_file: Path, ca_path: Path) -> dict[str, str]:
    """The pveapi connection block both programs read (docs/exporter.md, docs/controller.md)."""
    return {"host": api_host, "user": user, "token_name": token_name,
            "token_value_file": str(token_file), "verify_ssl": str(ca_path)}


def exporter_config(api_host: str, user: str, token_name: str, token_file: Path, ca_path: Path) -> str:
    return yaml.safe_dump({"default": _connection(api_host, user, token_name, token_file, ca_path)}, sort_keys=False)


def prometheus_config(product_config: Path, targets: Mapping[str, str], interval: str,
                      rule_files: Sequence[Path] | None = None, alertmanager: str | None = None) -> str:
    """The product's prometheus.yml with local targets: the same jobs and rules.

    `targets` maps job name -> host:port; jobs without a target are left out. `rule_files`
    replaces the product's rules (tests use it to shorten alert durations). Alerts go to
    `alertmanager` (host:port), or nowhere without one. Live samples keep the `job` and
    `instance` labels Prometheus adds, as on a real stack; the backfill stamps the same ones,
    so live series continue the history.
    """
    try:
        config: dict[str, Any] = yaml.safe_load(product_config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{product_config}: cannot read it ({exc.strerror}); run from a pvebalance checkout") from None
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] in targets:
            jobs.append({**job, "static_configs": [{"targets": [targets[job["job_name"]]]}]})
    config["scrape_configs"] = jobs
    if rule_files is None:
        config["rule_files"] = [str(product_config.parent / pattern) for pattern in config.get("rule_files", [])]
    else:
        config["rule_files"] = [str(path) for path in rule_files]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    # Faster than production so live figures and rule results appear within seconds.
    config["global"] = {**config["global"], "scrape_interval": interval, "evaluation_interval": interval,
                        "scrape_timeout": interval}
    return yaml.safe_dump(config, sort_keys=False)


def recording_rule_passes(rule_files: Sequence[Path], interval: float) -> list[str]:
    """The recording rules of `rule_files` as rule files for `promtool tsdb create-blocks-from
    rules`, one per pass: pass N holds the rules that read series of pass N-1's rules (promtool
    cannot read what it is writing). Alerting rules are left out."""
    recording = [rule for path in rule_files
                 for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", [])
                 for rule in group.get("rules", []) if "record" in rule]
    level: dict[str, int] = {}

    def level_of(rule: Mapping[str, Any]) -> int:
        if rule["record"] not in level:
            level[rule["record"]] = 0  # a cycle cannot load in Prometheus; this only stops recursion
            reads = [r for r in recording if r["record"] != rule["record"]
                     and re.search(rf"(?<![\w:]){re.escape(r['record'])}(?![\w:])", rule["expr"])]
            level[rule["record"]] = 1 + max((level_of(r) for r in reads), default=-1)
        return level[rule["record"]]

    passes: dict[int, list[Mapping[str, Any]]] = {}
    for rule in recording:
        passes.setdefault(level_of(rule), []).append(rule)
    # One group name for every pass (see LocalStack.backfill_rules for why).
    return [yaml.safe_dump({"groups": [{"name": "backfill", "interval": f"{interval:g}s", "rules": passes[n]}]},
                           sort_keys=False) for n in sorted(passes)]


def controller_config(api_host: str, user: str, token_name: str, token_file: Path, ca_path: Path,
                      prometheus_url: str | None, run: Mapping[str, Any], api_token_files: Mapping[str, Path]) -> str:
    """`api_token_files`: role (viewer, operator) -> the file holding that role's API token."""
    config: dict[str, Any] = {
        "proxmox": _connection(api_host, user, token_name, token_file, ca_path),
        "run": dict(run),
        "api": {"tokens": [{"name": f"demo-{role}", "role": role, "token_file": str(path)}
                           for role, path in api_token_files.items()]},
    }
    if prometheus_url is not None:
        config["prometheus"] = {"url": prometheus_url, "window": DEFAULT_WINDOW}
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(product_config: Path, secrets: Mapping[str, Path], controller_url: str,
                        unreachable: str) -> str:
    """The product's alertmanager.yml on one machine: secrets from local files, the webhook to
    `controller_url`, and e-mail and Slack sent to `unreachable` (host:port where nothing
    listens), so no notification leaves the machine.
    """
    text = product_config.read_text(encoding="utf-8")
    for name, path in secrets.items():
        text = text.replace(f"/run/secrets/{name}", str(path))
    config: dict[str, Any] = yaml.safe_load(text)
    config["global"]["smtp_smarthost"] = unreachable
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{controller_url}/webhook"
    return yaml.safe_dump(config, sort_keys=False)
