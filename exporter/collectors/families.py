"""Metric families, and the fast text encoding of the large ones.

Small families (node status, cluster info, self-metrics) are prometheus-client's own and go
through its `generate_latest`. The families of /cluster/resources (about 11 samples per guest)
are `FastFamily`: each node, guest and storage escapes its label set once (`Series`) and
shares it with all its families, and `encode()` writes their text directly, byte for byte
what `generate_latest` writes for the same samples (tests/exporter/test_encoder.py proves it
with random names, label values and values). prometheus-client's encoder costs about 9 us a
sample (client_python#1114), most of the scrape at 10,000 guests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

ID = ("id",)


def gauge(name: str, documentation: str, labels: Sequence[str] = ID) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _escape_value(value: str) -> str:
    # The text format's label value escaping, as generate_latest does it.
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_label_name = lru_cache(maxsize=256)(escape_label_name)
_EXACT = 2**53  # below it an int's float repr is its digits and ".0"


def go_float(value: float) -> str:
    """floatToGoString(value), without its float round trip for the ints most samples are."""
    if type(value) is int and -_EXACT < value < _EXACT:
        digits = str(value)
        if value < 1_000_000:
            return digits + ".0"
        # floatToGoString's exponent form for d > 0 whose repr has the dot past position 6.
        return f"{(digits[0] + '.' + digits[1:]).rstrip('0.')}e+{len(digits) - 1:02d}"
    return str(floatToGoString(value))


class Series:
    """One label set: label values as strings, and the `{...}` text written once for all families.

    Values are turned into strings here, so an answer with a number or a list where a name
    belongs still renders (as its text) instead of failing the whole scrape.
    """

    __slots__ = ("labels", "text")

    def __init__(self, labels: Mapping[str, Any]) -> None:
        self.labels: dict[str, str] = {name: value if type(value) is str else str(value) for name, value in labels.items()}
        if self.labels:
            pairs = ",".join(f'{_label_name(name)}="{_escape_value(self.labels[name])}"' for name in sorted(self.labels))
            self.text = "{" + pairs + "}"
        else:
            self.text = ""


@lru_cache(maxsize=65536)
def id_series(resource_id: str) -> Series:
    """The `{id="..."}` label set, built once per resource for all families and scrapes (ids are stable)."""
    return Series({"id": resource_id})


class FastFamily(Metric):
    """A gauge or counter whose samples are (Series, value) rows, encoded by `encode()`.

    It is still a prometheus-client `Metric`: `samples` builds the usual Sample list on demand,
    so registries, generate_latest (OpenMetrics for backfill) and the parser all work on it.
    """

    def __init__(self, name: str, documentation: str, typ: str = "gauge") -> None:
        if typ not in ("gauge", "counter"):
            raise ValueError(f"FastFamily is a gauge or a counter, not {typ}")
        self._rows: list[tuple[Series, float]] = []
        if typ == "counter" and name.endswith("_total"):  # as CounterMetricFamily does
            name = name[: -len("_total")]
        super().__init__(name, documentation, typ)
        self._sample_name = name + "_total" if typ == "counter" else name

    @property
    def samples(self) -> list[Sample]:
        name = self._sample_name
        return [Sample(name, series.labels, value) for series, value in self._rows]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        if samples:  # Metric.__init__ sets [], nothing else may
            raise ValueError("add rows to a FastFamily with add()")
        self._rows = []

    def add(self, series: Series, value: float) -> None:
        self._rows.append((series, value))

    def _head(self, exposed: str) -> str:
        documentation = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {exposed} {documentation}\n# TYPE {exposed} {self.type}\n"

    def text(self) -> str:
        """This family in the text format, exactly as generate_latest writes it."""
        exposed = escape_metric_name(self._sample_name)
        return self._head(exposed) + "".join([f"{exposed}{series.text} {go_float(value)}\n" for series, value in self._rows])


@lru_cache(maxsize=1024)
def _state_tail(state: str, value: int) -> str:
    return f'{_escape_value(state)}"}} {go_float(value)}\n'


class StateFamily(FastFamily):
    """A gauge of which state each resource is in: `{id, state}` series, 1 for the held one.

    With `zeros` (prometheus-pve-exporter's way) every `known` state gets a series, 0 where not
    held; a held state outside `known` still gets its 1. Rows are kept per resource and expanded
    only when written, so the zeros cost no objects.
    """

    def __init__(self, name: str, documentation: str, zeros: bool) -> None:
        super().__init__(name, documentation)
        self._zeros = zeros
        self._held: list[tuple[Series, str | None, tuple[str, ...]]] = []

    def add_state(self, series: Series, held: str | None, known: tuple[str, ...]) -> None:
        """`series` labels the resource by `id` alone; a `held` that is not a string renders as its text."""
        self._held.append((series, held if held is None or type(held) is str else str(held), known))

    def _states(self, held: str | None, known: tuple[str, ...]) -> list[tuple[str, int]]:
        states = [(state, 1 if state == held else 0) for state in known] if self._zeros else []
        if held and (held not in known or not self._zeros):
            states.append((held, 1))
        return states

    @property
    def samples(self) -> list[Sample]:
        name = self._sample_name
        return [Sample(name, {**series.labels, "state": state}, value)
                for series, held, known in self._held for state, value in self._states(held, known)]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        FastFamily.samples.fset(self, samples)  # type: ignore[attr-defined]

    def text(self) -> str:
        exposed = escape_metric_name(self._sample_name)
        head = self._head(exposed)
        parts = [head]
        for series, held, known in self._held:
            start = f'{exposed}{series.text[:-1]},state="'  # "state" sorts after "id"
            parts.extend([start + _state_tail(state, value) for state, value in self._states(held, known)])
        return "".join(parts)


class _Only:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def encode(metrics: Iterable[Metric]) -> bytes:
    """The text format (0.0.4) of `metrics`: generate_latest's bytes, faster for FastFamily."""
    parts = [
        metric.text().encode("utf-8") if isinstance(metric, FastFamily) else generate_latest(_Only(metric))
        for metric in metrics
    ]
    return b"".join(parts)
