"""The dashboards in grafana/dashboards are generated, in sync, and loadable by Grafana 11/12
with the provisioned datasource. Their queries are run against real Prometheus data in
test_stack_e2e.py.
"""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.stack.dashboards import DASHBOARDS, ROOT, load_all, panel_queries

GRAFANA = ROOT / "grafana"
GRID_WIDTH = 24


def _provisioned_datasource_uids() -> set[str]:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    return {ds["uid"] for ds in config["datasources"]}


def test_committed_dashboards_match_the_generator() -> None:
    done = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    boards = load_all()
    assert set(boards) == {"overview.json", "node.json", "guest.json", "balancer.json"}
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids)


def test_schema_version_is_one_grafana_11_and_12_load() -> None:
    # 39 is Grafana 11.0's, 42 the last of the classic model (Grafana 12).
    for name, board in load_all().items():
        assert 39 <= board["schemaVersion"] <= 42, name


def test_panel_ids_are_unique_and_panels_fit_the_grid_without_overlap() -> None:
    for name, board in load_all().items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        taken: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= GRID_WIDTH, (name, panel["title"])
            cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & taken, (name, panel["title"])
            taken |= cells


def test_every_datasource_reference_is_the_provisioned_one() -> None:
    uids = _provisioned_datasource_uids()
    for name, board in load_all().items():
        refs = [p["datasource"] for p in board["panels"]]
        refs += [t["datasource"] for p in board["panels"] for t in p["targets"]]
        refs += [v["datasource"] for v in board["templating"]["list"] if v["type"] == "query"]
        for ref in refs:
            assert ref == {"type": "prometheus", "uid": ref["uid"]} and ref["uid"] in uids, (name, ref)


def test_every_panel_has_a_query_and_a_description() -> None:
    for name, board in load_all().items():
        for panel in board["panels"]:
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), (name, panel["title"])
            assert panel["description"], (name, panel["title"])


def test_every_variable_a_query_uses_is_defined() -> None:
    builtins = {"__rate_interval", "__interval", "__range"}
    defined = {name: {v["name"] for v in b["templating"]["list"]} for name, b in load_all().items()}
    for query in panel_queries():
        assert query.variables() <= defined[query.dashboard] | builtins, query


def test_dashboard_provider_points_where_compose_mounts_the_json() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "pvebalance.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{path}:ro" in mounts
    assert DASHBOARDS.is_dir()


def test_docs_explain_every_panel() -> None:
    docs = (ROOT / "docs" / "stack.md").read_text()
    for name, board in load_all().items():
        assert f"### {board['title']}" in docs, name
        for panel in board["panels"]:
            assert panel["title"] in docs, (name, panel["title"])
