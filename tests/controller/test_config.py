"""The controller's config file: values, defaults, secrets and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import load_config, parse_config
from pveapi import values
from pveapi.errors import ConfigError

PROXMOX = {"host": "pve1.example.com", "user": "balancer@pve", "token_name": "pvebalance", "token_value": "t0ken"}


def _config(**blocks: object) -> dict[str, object]:
    return {"proxmox": PROXMOX, **blocks}


def test_defaults_are_safe_manual_and_one_hour_average() -> None:
    config = parse_config(_config(prometheus={"url": "http://prom:9090"}), "c.yaml", env={})
    assert config.run.automation == "manual" and not config.run.fallback_to_live
    assert config.prometheus is not None and config.prometheus.window == "1h"
    assert str(config.prometheus.statistic) == "avg" and config.prometheus.max_data_age == 300
    assert config.apply.max_in_flight == 2 and config.apply.max_in_flight_per_node == 1
    assert config.proxmox.verify_ssl is True and config.prometheus.verify_ssl is True


def test_every_block_is_read(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("ignore: [105]\nmaintenance: [pve3]\n")
    (tmp_path / "hook").write_text("hook-secret\n")
    (tmp_path / "config.yaml").write_text(
        """
proxmox: {host: pve1, user: balancer@pve, token_name: t, token_value_env: PVE_T}
prometheus:
  url: https://mimir.example/prometheus
  window: 24h
  statistic: quantile(0.95)
  max_data_age: 2m
  bearer_token_env: PROM_T
  headers: {X-Scope-OrgID: pve}
policy: {trigger: 0.1}
rules: {anti_affinity: [{name: dns, vmids: [101, 102]}]}
rules_file: rules.yaml
apply: {max_in_flight: 4, max_in_flight_per_node: 2, task_timeout: 20m, lxc_shutdown_timeout: 60}
run: {interval: 1m, automation: automatic, hold_time: 0, cooldown: 2h, state_file: state.json,
      listen: "0.0.0.0:18300", webhook_token_file: hook, fallback_to_live: true}
"""
    )
    config = load_config(tmp_path / "config.yaml", env={"PVE_T": "pve-secret", "PROM_T": "prom-secret"})
    assert config.prometheus is not None and config.prometheus.window == "24h"
    assert str(config.prometheus.statistic) == "quantile(0.95)" and config.prometheus.max_data_age == 120
    assert config.prometheus.headers == {"X-Scope-OrgID": "pve"}
    assert config.policy.trigger == 0.1
    assert [r.selector.vmids for r in config.rules.anti_affinity] == [frozenset({101, 102})]
    assert config.rules.ignore[0].selector.vmids == {105} and config.rules.maintenance[0].nodes == {"pve3"}
    assert (config.apply.max_in_flight, config.apply.task_timeout, config.apply.lxc_shutdown_timeout) == (4, 1200, 60)
    assert config.run.interval == 60 and config.run.hold_time == 0 and config.run.cooldown == 7200
    assert config.run.state_file == tmp_path / "state.json" and config.run.listen_address == ("0.0.0.0", 18300)
    assert sorted(config.secrets()) == ["hook-secret", "prom-secret", "pve-secret"]
    assert not any(s in repr(config) for s in config.secrets())


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ({"prometheus": {"url": "prom:9090"}}, r"prometheus\.url: expected http\(s\)://host:port"),
        ({"prometheus": {"url": "http://p", "window": "2h"}}, r"window: expected one of 1h, 6h, 24h, 7d, got '2h'"),
        ({"prometheus": {"url": "http://p", "statistic": "median"}}, r"statistic: expected avg, quantile\(Q\)"),
        ({"prometheus": {"url": "http://p", "max_data_age": "soon"}}, r"max_data_age: expected a duration"),
        ({"run": {"outcome_horizons": "1h"}}, r"run\.outcome_horizons: expected a list of up to 16 durations such as \[5m, 1h, 24h\]"),
        ({"run": {"outcome_horizons": ["5m", "never"]}}, r"run\.outcome_horizons\[1\]: expected a duration"),
        ({"run": {"outcomes_kept": 0}}, r"run\.outcomes_kept: expected a whole number from 1 to 10000, got 0"),
        ({"prometheus": {"url": "http://p", "bearer_token_env": "NOPE"}}, r"bearer_token_env: environment variable NOPE"),
        ({"prometheus": {"url": "http://p", "username": "u"}}, r"username is set but no password"),
        ({"prometheus": {"url": "http://p", "tls": 1}}, r"prometheus: unknown key\(s\) tls"),
        ({"apply": {"max_in_flight": 0}}, r"apply\.max_in_flight: expected a whole number from 1 to 64, got 0"),
        ({"apply": {"with_local_disk": True}}, r"apply: unknown key\(s\) with_local_disk"),
        ({"run": {"automation": "auto"}}, r"run\.automation: must be manual \(plan only\) or automatic"),
        ({"run": {"listen": "9883"}}, r"run\.listen: expected host:port"),
        ({"run": {"cooldown": -1}}, r"run\.cooldown: expected a duration"),
        ({"run": {"interval": -5}}, r"run\.interval: expected a duration such as 30s, 5m or 1h, more than 0, at most 1d, got -5"),
        # NaN and infinity never switch a limit off, and never end in a traceback later
        ({"run": {"cooldown": float("nan")}}, r"run\.cooldown: expected a duration .*0 \(off\) or more, at most 30d, got nan"),
        ({"run": {"interval": float("inf")}}, r"run\.interval: expected a duration .* got inf"),
        ({"run": {"hold_time": "1e400s"}}, r"run\.hold_time: expected a duration"),
        ({"run": {"lease_ttl": float("nan")}}, r"run\.lease_ttl: expected a duration"),
        ({"run": {"listen": "127.0.0.1:99999"}}, r"run\.listen port: expected a whole number from 0 to 65535, got 99999"),
        ({"run": {"state_file": {"a": 1}}}, r"run\.state_file: expected a non-empty string, got \{'a': 1\}"),
        ({"apply": {"task_timeout": float("nan")}}, r"apply\.task_timeout: expected a duration .* got nan"),
        ({"apply": {"task_timeout": "8w"}}, r"apply\.task_timeout: expected a duration .*at most 7d, got '8w'"),
        ({"apply": {"max_in_flight": 2.5}}, r"apply\.max_in_flight: expected a whole number"),
        ({"apply": {"max_consecutive_failures": 1e308}}, r"max_consecutive_failures: expected a whole number from 1 to 1000, got 1e\+308"),
        ({"prometheus": {"url": "http://p", "max_data_age": float("nan")}}, r"prometheus\.max_data_age: expected a duration .* got nan"),
        ({"prometheus": {"url": "http://p", "timeout": float("inf")}}, r"prometheus\.timeout: expected a duration .*at most 1h, got inf"),
        ({"prometheus": {"url": "http://p", "statistic": "quantile(1.2.3)"}}, r"statistic: expected avg, quantile\(Q\) .* got 'quantile\(1\.2\.3\)'"),
        ({"prometheus": {"url": "http://p", "statistic": "mean_stddev(1e400)"}}, r"statistic: expected avg"),
        ({"prometheus": {"url": "http://p", "statistic": "mean_stddev(99)"}}, r"statistic: mean_stddev's K: expected a number from 0 to 10, got 99"),
        ({"prometheus": {"url": "http://p", "window": ["1h"]}}, r"prometheus\.window: expected one of 1h, 6h, 24h, 7d, got \['1h'\]"),
        ({"proxmox": {**PROXMOX, "timeout": float("inf")}}, r"proxmox\.timeout: expected a duration .* got inf"),
        ({"proxmox": {**PROXMOX, "host": "http://pve1:8006/"}}, r"proxmox\.host: expected a host name or address, optionally with :port or as https://host:port/, got 'http://pve1:8006/'"),
        ({"policy": {"cpu_weight": float("nan")}}, r"policy\.cpu_weight: expected a number from 0 to 1, got nan"),
        ({"policy": {"trigger": float("nan")}}, r"policy\.trigger: expected a number from 0 to 1, got nan"),
        ({"policy": {"cpu_overcommit": float("inf")}}, r"policy\.cpu_overcommit: expected a number from 0\.01 to 1024, got inf"),
        ({"policy": {"memory_headroom": float("nan")}}, r"policy\.memory_headroom: expected a number from 0 to 0\.9, got nan"),
        ({"rules": {"reservations": {"pve1": {"cpu_cores": float("nan")}}}}, r"rules\.reservations\.pve1\.cpu_cores: expected a number from 0 to 65536, got nan"),
        ({"rules": {"reservations": {"pve1": {"memory": "1e400G"}}}}, r"rules\.reservations\.pve1\.memory: expected a size"),
        ({"rules": {"ignore": [{"vmids": [100.5]}]}}, r"rules\.ignore\[0\]\.vmids: expected a VMID"),
        ({"run": {"fallback_to_live": "yes"}}, r"run\.fallback_to_live: expected true or false"),
        ({"policy": {"trigger": 2}}, r"policy\.trigger"),
        ({"rules": {"ignore": ["abc"]}}, r"rules\.ignore\[0\]"),
        ({"rules_file": "missing.yaml"}, r"rules file missing\.yaml: cannot read it"),
        ({"planner": {}}, r"unknown key\(s\) planner; allowed: ai, api, apply, policy"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(blocks: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_config(_config(**blocks), "c.yaml", env={})
    assert "\n" not in str(error.value)


def test_missing_proxmox_block_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="proxmox block is required"):
        parse_config({"run": {}}, "c.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("proxmox: {host: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read it .* pass --config or set PVEBALANCE_CONFIG"):
        load_config(tmp_path / "nope.yaml", env={})


def test_secrets_come_from_the_environment_when_the_file_names_none() -> None:
    env = {"PVE_TOKEN_VALUE": "a", "PVEBALANCE_PROMETHEUS_TOKEN": "b", "PVEBALANCE_WEBHOOK_TOKEN": "c"}
    config = parse_config(
        {"proxmox": {"host": "h", "user": "u@pve", "token_name": "t"}, "prometheus": {"url": "http://p"}}, "c", env=env
    )
    assert sorted(config.secrets()) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "seconds"), [(30, 30), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("1.5h", 5400), ("7d", 604800), ("2w", 1209600)]
)
def test_durations(text: object, seconds: float) -> None:
    assert values.duration(text, "x") == seconds


def test_cooldown_and_hold_time_may_be_switched_off_with_zero() -> None:
    config = parse_config(_config(run={"cooldown": 0, "hold_time": "0s"}), "c.yaml", env={})
    assert config.run.cooldown == 0 and config.run.hold_time == 0


def test_the_host_may_be_pasted_from_the_browser() -> None:
    for host, expected in [("https://pve1:8006/", "pve1:8006"), ("https://pve1.example.com:8006/api2/json", "pve1.example.com:8006"),
                           ("pve1", "pve1"), ("[fd00::1]:8006", "[fd00::1]:8006")]:
        config = parse_config({"proxmox": {**PROXMOX, "host": host}}, "c.yaml", env={})
        assert config.proxmox.host == expected


def test_a_deeply_nested_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("proxmox: " + "[" * 20000 + "]" * 20000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as error:
        load_config(path, env={})
    assert "\n" not in str(error.value)
