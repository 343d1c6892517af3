"""PromQL history against a real Prometheus fed with hand-written exporter series."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from structlog.testing import capture_logs

from controller.promql import History, PrometheusError, PrometheusSettings, PromQL, Statistic
from pveapi.settings import Secret
from testkit.processes import free_port
from testkit.prometheus import RunningPrometheus, running_prometheus, write_history
from tests.controller.history import GIB, exporter_samples

NOW = time.time()
# 10 samples a minute apart in the last hour, alternating so avg, quantile and stddev differ.
CPU_PATTERN = [0.2, 0.6, 0.2, 0.6, 0.2, 0.6, 0.2, 0.6, 0.2, 1.0]
GUESTS = {f"qemu/{100 + i}": (4, 16 * GIB) for i in range(5)}
NODES = {"node/pve1": (32, 128 * GIB), "node/pve2": (16, 64 * GIB)}


def _cpu(resource_id: str, i: int) -> float:
    return CPU_PATTERN[i % len(CPU_PATTERN)] if resource_id.startswith("qemu") else 0.25


def _mem(resource_id: str, i: int) -> float:
    return (2 + i % 2) * GIB


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    data = tmp_path_factory.mktemp("promql") / "tsdb"
    fresh = {**GUESTS, **NODES}
    samples = list(exporter_samples(fresh, _cpu, _mem, NOW - 9 * 60 - 30, NOW - 30))
    # The same guest twice (a second exporter): must not double its figures.
    samples += exporter_samples({"qemu/100": (4, 16 * GIB)}, _cpu, _mem, NOW - 9 * 60 - 30, NOW - 30,
                                labels={"job": "pve", "instance": "other:9221"})
    # A guest whose exporter stopped 40 minutes ago: stale.
    samples += exporter_samples({"lxc/300": (2, 4 * GIB)}, _cpu, _mem, NOW - 50 * 60, NOW - 40 * 60)
    write_history(data, samples)
    with running_prometheus(data) as server:
        yield server


def _promql(url: str, statistic: str = "avg", **kwargs: Any) -> PromQL:
    return PromQL(PrometheusSettings(url=url, statistic=Statistic.parse(statistic, "statistic"), **kwargs))


def _query_requests(prom: RunningPrometheus) -> float:
    text = requests.get(prom.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith('prometheus_http_requests_total{code="200",handler="/api/v1/query"}'):
            return float(line.split()[-1])
    return 0.0


def test_average_cpu_in_cores_and_memory_for_guests_not_nodes(prom: RunningPrometheus) -> None:
    history = _promql(prom.url).history(at=NOW)
    cores, mem = history.usage("qemu/100") or (None, None)
    assert cores == pytest.approx(4 * statistics.mean(CPU_PATTERN))
    assert mem == pytest.approx(2.5 * GIB, rel=0.06)
    assert history.usage("node/pve1") is None  # nodes' averages would lag behind migrations
    assert history.fresh and history.data_age == pytest.approx(30, abs=1)


def test_quantile_and_mean_plus_k_stddev(prom: RunningPrometheus) -> None:
    p90 = _promql(prom.url, "quantile(0.9)").history(at=NOW).usage("qemu/101")
    spread = _promql(prom.url, "mean_stddev(2)").history(at=NOW).usage("qemu/101")
    assert p90 is not None and spread is not None
    assert p90[0] == pytest.approx(4 * 0.64)  # Prometheus interpolates between 0.6 and 1.0
    expected = statistics.mean(CPU_PATTERN) + 2 * statistics.pstdev(CPU_PATTERN)
    assert spread[0] == pytest.approx(4 * expected)


def test_stale_and_missing_series_give_no_figures(prom: RunningPrometheus) -> None:
    history = _promql(prom.url, max_data_age=300).history(at=NOW)
    assert history.usage("lxc/300") is None  # last sample 40 minutes old
    assert history.usage("qemu/999") is None  # never exported
    later = _promql(prom.url, max_data_age=300).history(at=NOW + 3600)
    assert not later.fresh and later.usage("qemu/100") is None


def test_a_fixed_number_of_queries_whatever_the_cluster_size(prom: RunningPrometheus) -> None:
    before = _query_requests(prom)
    history = _promql(prom.url).history(at=NOW)
    assert _query_requests(prom) - before == history.queries == 3
    assert set(history.cpu_cores) == {*GUESTS, "lxc/300"}  # every guest at once, nodes not at all


def test_series_present_counts_each_needed_metric(prom: RunningPrometheus) -> None:
    present = _promql(prom.url).series_present(at=NOW)
    assert present["pve_cpu_usage_ratio"] == len(GUESTS) + 1  # two exporters for qemu/100
    assert _promql(prom.url).series_present(at=NOW + 86400) == dict.fromkeys(present, 0)


def test_a_bad_query_is_one_line_naming_prometheus(prom: RunningPrometheus) -> None:
    with pytest.raises(PrometheusError, match=r"^Prometheus http://127\.0\.0\.1:\d+: query failed \(HTTP 400\): .*parse error"):
        _promql(prom.url).query("sum(")


def test_unreachable_prometheus_is_one_clear_line() -> None:
    with pytest.raises(PrometheusError, match=r"unreachable \(ConnectionError\) - check prometheus.url$"):
        _promql(f"http://127.0.0.1:{free_port()}").history()


@responses.activate
def test_credentials_are_sent_and_never_shown() -> None:
    responses.get("https://prom.example:9090/api/v1/query", status=401, body="Unauthorized")
    promql = _promql("https://prom.example:9090", bearer_token=Secret("s3cr3t-token"))
    with pytest.raises(PrometheusError) as error:
        promql.query("up")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer s3cr3t-token"
    assert "s3cr3t" not in str(error.value)
    assert str(error.value).startswith("Prometheus https://prom.example:9090: HTTP 401")


@responses.activate
def test_a_password_in_the_url_never_shows_in_errors() -> None:
    responses.get("https://prom.example:9090/api/v1/query", status=502, body="bad gateway")
    with pytest.raises(PrometheusError) as error:
        _promql("https://user:pa55word@prom.example:9090").query("up")
    assert "pa55word" not in str(error.value) and "prom.example:9090: HTTP 502" in str(error.value)


@responses.activate
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html>login</html>", "not JSON - is prometheus.url a Prometheus query API"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "expected an instant vector"),
        ({"status": "error", "errorType": "timeout", "error": "query timed out"}, "query timed out"),
    ],
)
def test_answers_that_are_not_an_instant_vector_are_one_line(body: object, message: str) -> None:
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.get("http://vm.example:8428/api/v1/query", **kwargs)
    with pytest.raises(PrometheusError, match=message):
        _promql("http://vm.example:8428").query("up")


@responses.activate
def test_unusable_samples_are_treated_as_missing() -> None:
    result = [
        {"metric": {"id": "qemu/1"}, "value": [1, "0.5"]},
        {"metric": {"id": "qemu/2"}, "value": [1, "NaN"]},
        {"metric": {"job": "x"}, "value": [1, "1"]},
        {"metric": {"id": "qemu/3"}, "value": [1, "not a number"]},
        {"metric": {"id": "qemu/4"}, "value": [1, "1e308"]},  # beyond any reading: not trusted
        {"metric": {"id": "qemu/5"}, "value": [1, "+Inf"]},
        {"metric": {"id": "qemu/6"}, "value": [1, "-Inf"]},
    ]
    responses.get("http://vm.example:8428/api/v1/query", json={"status": "success", "data": {"resultType": "vector", "result": result}})
    assert _promql("http://vm.example:8428").query("x") == {"qemu/1": 0.5}


def test_statistic_parsing_names_the_accepted_forms() -> None:
    assert str(Statistic.parse("quantile(0.95)", "s")) == "quantile(0.95)"
    assert str(Statistic.parse("mean_stddev(1.5)", "s")) == "mean_stddev(1.5)"
    for bad in ("median", "quantile(2)", "mean_stddev()"):
        with pytest.raises(Exception, match="expected avg, quantile|quantile must be in"):
            Statistic.parse(bad, "prometheus.statistic")


def test_history_without_samples_is_not_fresh() -> None:
    empty = History({}, {}, {}, at=NOW, max_age=300, window="1h", statistic="avg")
    assert empty.data_age is None and not empty.fresh


@responses.activate
def test_a_partial_answer_is_used_and_its_warnings_logged() -> None:
    body = {"status": "success", "warnings": ["store 10.0.0.7:10901 unavailable"],
            "data": {"resultType": "vector", "result": [{"metric": {"id": "qemu/1"}, "value": [1, "2"]}]}}
    responses.get("http://thanos.example:10902/api/v1/query", json=body)
    with capture_logs() as logs:
        assert _promql("http://thanos.example:10902").query("x") == {"qemu/1": 2.0}
    assert logs[0]["event"] == "prometheus.warnings" and "unavailable" in logs[0]["warnings"][0]


def test_samples_dated_in_the_future_are_not_fresh() -> None:
    year = 365 * 86400.0
    history = History({"qemu/1": 1.0}, {"qemu/1": GIB}, {"qemu/1": NOW + year}, at=NOW, max_age=300, window="1h", statistic="avg")
    assert history.data_age is None and not history.fresh and history.future_samples == 1
    assert history.usage("qemu/1") is None
    skewed = History({"qemu/1": 1.0}, {"qemu/1": GIB}, {"qemu/1": NOW + 5}, at=NOW, max_age=300, window="1h", statistic="avg")
    assert skewed.fresh and skewed.usage("qemu/1") == (1.0, GIB)  # a few seconds of clock skew are fine


def test_impossible_figures_are_never_trusted() -> None:
    negative = History({"qemu/1": -4.0}, {"qemu/1": -GIB}, {"qemu/1": NOW}, at=NOW, max_age=300, window="1h", statistic="avg")
    assert negative.usage("qemu/1") is None  # the guest plans from its live figures


@responses.activate
def test_a_deeply_nested_answer_is_one_line() -> None:
    responses.get("http://vm.example:8428/api/v1/query", body="[" * 200_000 + "]" * 200_000)
    with pytest.raises(PrometheusError, match="nested too deeply"):
        _promql("http://vm.example:8428").query("x")
