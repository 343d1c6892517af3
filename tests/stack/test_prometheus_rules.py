"""The Prometheus and Alertmanager configs in prometheus/ are valid and their rules behave.

`promtool test rules` runs the unit tests in prometheus/tests/, which feed series to the rules
and check each alert fires (and does not fire) when a user would expect.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "prometheus"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on the PATH: run scripts/ensure-prometheus.sh and scripts/ensure-stack-tools.sh")
    return path


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=PROM, capture_output=True, text=True, timeout=120)


def _alerts() -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load((PROM / "rules" / "alerts.yml").read_text())
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}


def test_prometheus_config_and_rules_are_valid() -> None:
    result = _run(_tool("promtool"), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    # check config also checks the rule files it names; make sure it found all of them.
    assert f"SUCCESS: {len(list((PROM / 'rules').glob('*.yml')))} rule files found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(PROM)) for p in (PROM / "tests").glob("*.yml"))
    assert tests
    result = _run(_tool("promtool"), "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    fired: set[str] = set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    assert sorted(set(_alerts()) - fired) == []


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_docs_list_every_alert() -> None:
    docs = (ROOT / "docs" / "stack.md").read_text()
    assert [name for name in _alerts() if f"| {name} |" not in docs] == []


def test_alertmanager_config_is_valid() -> None:
    result = _run(_tool("amtool"), "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_routes_name_only_alerts_that_exist() -> None:
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    names = set(_alerts())
    for route in config["route"]["routes"]:
        for matcher in route.get("matchers", []):
            if matcher.startswith("alertname=~"):
                routed = set(matcher.split("=~", 1)[1].strip('"').split("|"))
                assert routed <= names, routed - names


def test_webhook_token_comes_from_a_file_not_the_config() -> None:
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    hooks = [w for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert hooks
    for hook in hooks:
        auth = hook["http_config"]["authorization"]
        assert auth["type"] == "Bearer" and "credentials" not in auth
        assert auth["credentials_file"] == "/run/secrets/webhook_token"
