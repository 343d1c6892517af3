"""The fast encoder writes exactly what prometheus-client's generate_latest writes for the same samples."""

from __future__ import annotations

import math
import shutil
import subprocess
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from exporter.collectors.families import FastFamily, Series, StateFamily, encode, go_float
from exporter.kept import KeptTexts

NAMES = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True)
LABEL_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True).filter(lambda n: not n.startswith("__"))
# Quotes, backslashes, newlines, any unicode (no surrogates: not UTF-8 encodable).
LABEL_VALUES = st.text(st.characters(blacklist_categories=["Cs"]) | st.sampled_from('"\\\n{}=,'), max_size=12)
# What families() draws: (name, type, help, label names, [(label values, value)]) per family.
Drawn = list[tuple[str, str, str, list[str], list[tuple[list[str], float]]]]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.sampled_from([0, 1, 0.0, -0.0, 1e21, 123456789.0, 1e-7]),
    # Where go_float's shortcuts end: Go's exponents from 1e6 up, trailing zeros, 2**53.
    st.sampled_from([999_999, 1_000_000, 10**7, 17_179_869_184, 2**53 - 1, 2**53, -(10**7), 999_999.9, 1e6, -1e6, 1e16]),
)


@st.composite
def families(draw: st.DrawFn) -> Drawn:
    count = draw(st.integers(min_value=1, max_value=4))
    names = draw(st.lists(NAMES, min_size=count, max_size=count, unique=True))
    drawn = []
    for name in names:
        typ = draw(st.sampled_from(["gauge", "counter"]))
        documentation = draw(st.text(max_size=20))
        labels = draw(st.lists(LABEL_NAMES, max_size=3, unique=True))
        rows = draw(st.lists(st.tuples(st.lists(LABEL_VALUES, min_size=len(labels), max_size=len(labels)), VALUES),
                             max_size=5))
        drawn.append((name, typ, documentation, labels, rows))
    return drawn


def reference(drawn: Drawn) -> list[Metric]:
    """The same samples as prometheus-client's own families."""
    metrics: list[Metric] = []
    for name, typ, documentation, labels, rows in drawn:
        cls = CounterMetricFamily if typ == "counter" else GaugeMetricFamily
        family = cls(name, documentation, labels=labels)
        for values, value in rows:
            family.add_metric(values, value)
        metrics.append(family)
    return metrics


def fast(drawn: Drawn) -> list[Metric]:
    metrics: list[Metric] = []
    for name, typ, documentation, labels, rows in drawn:
        family = FastFamily(name, documentation, typ)
        # A column at a time, as the /cluster/resources families are filled (add() is row by row).
        family.extend([Series(dict(zip(labels, values, strict=True))) for values, _ in rows], [value for _, value in rows])
        metrics.append(family)
    return metrics


class Families:
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def latest(metrics: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(metrics))
    return generate_latest(registry)


@settings(max_examples=300, deadline=None)
@given(families())
def test_fast_encoding_is_generate_latest_byte_for_byte(drawn: Drawn) -> None:
    expected = latest(reference(drawn))
    assert encode(fast(drawn)) == expected
    # FastFamily is still a prometheus-client Metric: generate_latest on it agrees too.
    assert latest(fast(drawn)) == expected


@settings(max_examples=100, deadline=None)
@given(families(), NAMES, st.sampled_from(["gauge", "counter"]))
def test_a_mirrored_family_is_its_rows_under_its_own_name(
    drawn: list[tuple[str, str, str, list[str], list[tuple[list[str], float]]]], name: str, typ: str
) -> None:
    # prometheus-pve-exporter's deprecated gauges: a counter's rows again, under the old name.
    (_, _, documentation, labels, rows), *_ = drawn
    mirrored = reference([(name, typ, documentation, labels, rows)])
    fast_family = fast(drawn)[0]
    assert isinstance(fast_family, FastFamily)
    assert encode([fast_family, fast_family.mirror(name, documentation, typ)])[len(encode([fast_family])):] == latest(mirrored)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(VALUES, min_size=3, max_size=3), min_size=2, max_size=4))
def test_a_family_encoded_scrape_after_scrape_is_its_samples_each_time(scrapes: list[list[float]]) -> None:
    # The same label sets every scrape, as id_series hands them out; the values as the scrapes bring
    # them (0.0 then -0.0, 1 then 1.0, NaN, ...). Unchanged rows give the very bytes of the last
    # scrape, so their gzip is kept; changed ones are written afresh.
    series = [Series({"id": f"qemu/{vmid}"}) for vmid in (100, 101, 102)]
    kept = KeptTexts()  # the target's
    last: tuple[list[float], bytes] | None = None
    for values in scrapes:
        family = FastFamily("pve_memory_usage_bytes", "Used memory in bytes")
        family.extend(series, values)
        expected = GaugeMetricFamily("pve_memory_usage_bytes", "Used memory in bytes", labels=["id"])
        for one, value in zip(series, values, strict=True):
            expected.add_metric([one.labels["id"]], value)
        part = family.encoded(kept)
        assert part.text == latest([expected])
        unchanged = last is not None and array("d", values).tobytes() == array("d", last[0]).tobytes()  # the same doubles
        assert part.kept == unchanged
        if last is not None and unchanged:
            assert part.text is last[1]
        last = (values, part.text)


def test_a_family_whose_later_label_set_changed_is_written_afresh() -> None:
    # Same name, size, first series and values: only the second guest is another one now.
    kept = KeptTexts()
    first, other, third = (Series({"id": f"qemu/{vmid}"}) for vmid in (100, 101, 102))
    for second in (other, third):
        family = FastFamily("pve_memory_size_bytes", "Memory size in bytes")
        family.extend([first, second], [2.0, 2.0])
        expected = GaugeMetricFamily("pve_memory_size_bytes", "Memory size in bytes", labels=["id"])
        for one in (first, second):
            expected.add_metric([one.labels["id"]], 2.0)
        assert family.encoded(kept).text == latest([expected])


RESOURCES = st.lists(st.tuples(LABEL_VALUES, st.one_of(st.none(), LABEL_VALUES, st.sampled_from(["started", "backup", ""]))),
                     max_size=5)
KNOWN = st.lists(st.sampled_from(["started", "stopped", "backup", "snapshot-delete"]) | LABEL_VALUES, max_size=4, unique=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(RESOURCES, KNOWN), min_size=1, max_size=3), st.booleans())
def test_state_family_is_generate_latest_byte_for_byte(runs: list[tuple[list[tuple[str, str | None]], list[str]]],
                                                       zeros: bool) -> None:
    # The 0/1 state gauges (pve_ha_state, pve_lock_state), their zeros written straight from the
    # rows; runs of resources with their own known states (nodes, then guests).
    family = StateFamily("pve_ha_state", "HA state", zeros)
    expected = GaugeMetricFamily("pve_ha_state", "HA state", labels=["id", "state"])
    for resources, known in runs:
        family.add_states([Series({"id": resource_id}) for resource_id, _ in resources], [held for _, held in resources],
                          tuple(known))
        for resource_id, held in resources:
            states = [(state, 1 if state == held else 0) for state in known] if zeros else []
            if held and (held not in known or not zeros):
                states.append((held, 1))
            for state, value in states:
                expected.add_metric([resource_id, state], value)
    assert encode([family]) == latest([expected])
    assert encode([family]) == latest([expected])  # again, from the blocks kept for the next scrape
    kept = KeptTexts()
    once, again = family.encoded(kept), family.encoded(kept)
    assert again.text is once.text and again.kept and not once.kept  # unchanged: the very bytes, so their gzip is kept
    assert latest([family]) == latest([expected])


@given(VALUES)
def test_go_float_is_float_to_go_string(value: float) -> None:
    assert go_float(value) == floatToGoString(value)


@settings(max_examples=100, deadline=None)
@given(families())
def test_prometheus_client_parses_the_fast_encoding_back(drawn: Drawn) -> None:
    parsed = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(encode(fast(drawn)).decode())
        for sample in family.samples
    }
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for name, typ, _, labels, rows in drawn:
        sample_name = name + "_total" if typ == "counter" else name
        for values, value in rows:  # a repeated label set: the parser keeps the last
            expected[(sample_name, tuple(sorted(zip(labels, values, strict=True))))] = float(value)
    assert parsed.keys() == expected.keys()
    for key, value in expected.items():
        assert parsed[key] == value or (math.isnan(parsed[key]) and math.isnan(value))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_a_scrape_encoding() -> None:
    family = FastFamily("pve_memory_usage_bytes", "Used memory\nin bytes \\ (nodes, guests)")
    family.add(Series({"id": 'qemu/100', "name": 'we"b\\01\nü'}), 1073741824)
    family.add(Series({"id": "qemu/101", "name": "x"}), math.nan)
    counter = FastFamily("pve_network_receive_bytes", "Bytes received", "counter")
    counter.add(Series({"id": "qemu/100"}), math.inf)
    text = encode([family, counter])
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
