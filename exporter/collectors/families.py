"""Metric families, and the fast text encoding of the large ones.

Small families (node status, cluster info, self-metrics) are prometheus-client's own and go
through its `generate_latest`. The families of /cluster/resources (about 38 samples per guest)
are `FastFamily`s filled a column at a time: each node, guest and storage escapes its label set
once (`Series`) and shares it with all its families, and `encode()` writes their text directly,
byte for byte what `generate_latest` writes for the same samples (tests/exporter/test_encoder.py
proves it with random names, label values and values). prometheus-client's encoder costs about
9 us a sample (client_python#1114), most of the scrape at 10,000 guests.

What stays the same from one scrape to the next is kept in bounded LRU caches: label sets
(`id_series`, `label_series`) and each resource's block of 0/1 state series for the state it
holds (`StateFamily`); and, per target, the text of a family whose rows are all as they were
(`KeptTexts`: sizes, vCPUs, info series), which is then the same bytes object, so its gzip is
kept too (exporter.compression). A family whose values moved is written afresh.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from ..kept import KeptTexts, Part

ID = ("id",)


def gauge(name: str, documentation: str, labels: Sequence[str] = ID) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _escape_value(value: str) -> str:
    # The text format's label value escaping, as generate_latest does it.
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


_label_name = lru_cache(maxsize=256)(escape_label_name)
_EXACT = 2**53  # below it an int's float repr is its digits and ".0"
# floatToGoString's exponent for an int of n digits (n > 6), which it writes past 999,999.
_EXPONENT = {digits: f"e+{digits - 1:02d}" for digits in range(7, 17)}


def go_float(value: float) -> str:
    """floatToGoString(value), without its float round trip for the ints and plain floats most samples are."""
    kind = type(value)
    if kind is int and -_EXACT < value < _EXACT:
        digits = str(value)
        if value < 1_000_000:
            return digits + ".0"
        # floatToGoString's exponent form: the digits as a mantissa without trailing zeros.
        mantissa = digits.rstrip("0")
        if len(mantissa) > 1:
            return digits[0] + "." + mantissa[1:] + _EXPONENT[len(digits)]
        return digits[0] + _EXPONENT[len(digits)]
    if kind is float and -1e6 < value < 1e6:  # finite, and below where Go switches to exponents
        return repr(value)
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


# Label sets and rendered state blocks are kept across scrapes in LRU caches this big: a
# resource's id, labels and held states rarely change between scrapes, values do (a family's
# text is kept only while all its values stay the same: KeptTexts). 65,536 covers the two state
# families of 30,000 guests; a bigger cluster only renders more of them afresh. Each entry is
# one label set or one block of a few lines.
CACHED_RESOURCES = 65536


@lru_cache(maxsize=CACHED_RESOURCES)
def id_series(resource_id: str) -> Series:
    """The `{id="..."}` label set, built once per resource for all families and scrapes (ids are stable)."""
    return Series({"id": resource_id})


@lru_cache(maxsize=CACHED_RESOURCES)
def label_series(labels: tuple[tuple[str, str], ...]) -> Series:
    """The label set of these (name, value) pairs, built once while it stays in use (info series)."""
    return Series(dict(labels))


class _Rows:
    """A family's (Series, value) rows as two columns, and the values' text once it is written."""

    __slots__ = ("_texts", "series", "values")

    def __init__(self) -> None:
        self.series: list[Series] = []
        self.values: list[float] = []
        self._texts: list[str] | None = None

    def extend(self, series: Iterable[Series], values: Iterable[float]) -> None:
        added = len(self.series)
        self.series.extend(series)
        self.values.extend(values)
        self._texts = None
        if len(self.series) != len(self.values):
            del self.series[added:], self.values[added:]
            raise ValueError("extend() needs as many values as series")

    def add(self, series: Series, value: float) -> None:
        self.series.append(series)
        self.values.append(value)
        self._texts = None

    def texts(self) -> list[str]:
        if self._texts is None:
            self._texts = [go_float(value) for value in self.values]
        return self._texts


class FastFamily(Metric):
    """A gauge or counter whose samples are (Series, value) rows, encoded by `encode()`.

    It is still a prometheus-client `Metric`: `samples` builds the usual Sample list on demand,
    so registries, generate_latest (OpenMetrics for backfill) and the parser all work on it.
    Rows are kept as two columns, so a whole column can be added at once (`extend`).
    """

    def __init__(self, name: str, documentation: str, typ: str = "gauge") -> None:
        if typ not in ("gauge", "counter"):
            raise ValueError(f"FastFamily is a gauge or a counter, not {typ}")
        self._rows = _Rows()
        if typ == "counter" and name.endswith("_total"):  # as CounterMetricFamily does
            name = name[: -len("_total")]
        super().__init__(name, documentation, typ)
        self._sample_name = name + "_total" if typ == "counter" else name

    @property
    def samples(self) -> list[Sample]:
        name = self._sample_name
        return [Sample(name, series.labels, value) for series, value in zip(self._rows.series, self._rows.values, strict=True)]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        if samples:  # Metric.__init__ sets [], nothing else may
            raise ValueError("add rows to a FastFamily with add()")
        self._rows = _Rows()

    def add(self, series: Series, value: float) -> None:
        self._rows.add(series, value)

    def extend(self, series: Iterable[Series], values: Iterable[float]) -> None:
        """Add rows column by column: `series` and `values` pair up in order and must be as long."""
        self._rows.extend(series, values)

    def mirror(self, name: str, documentation: str, typ: str = "gauge") -> FastFamily:
        """A family of these same rows under another name (prometheus-pve-exporter's deprecated
        gauges repeat its counters): the values are written once for both. Rows added to either
        are in both."""
        family = FastFamily(name, documentation, typ)
        family._rows = self._rows
        return family

    def _head(self, exposed: str) -> str:
        documentation = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {exposed} {documentation}\n# TYPE {exposed} {self.type}\n"

    def encoded(self, kept: KeptTexts | None = None) -> Part:
        """`text()` as UTF-8. With `kept` (the target's): while the family has the same rows as in
        the last scrape (the same Series objects, values that write the same), the same bytes
        object as then, so their gzip is kept too. Sizes, vCPUs and info series rarely change;
        usage changes every scrape."""
        if kept is None:
            return Part(self.text().encode("utf-8"), kept=False)
        rows = self._rows
        try:
            # A value's text is floatToGoString(float(value)), so equal doubles write the same
            # (-0.0 and 0.0 differ here, as in their text; a NaN's bits stay its own).
            values = array("d", rows.values).tobytes()
        except (TypeError, OverflowError):  # not a number, or past a double: rendered afresh
            return Part(self.text().encode("utf-8"), kept=False)
        head = self._head(escape_metric_name(self._sample_name))
        key = (head, len(rows.series), rows.series[0].text if rows.series else "")
        return kept.encoded(key, (list(rows.series), values), self.text)

    def text(self) -> str:
        """This family in the text format, exactly as generate_latest writes it."""
        exposed = escape_metric_name(self._sample_name)
        return self._head(exposed) + "".join(
            [f"{exposed}{series.text} {value}\n" for series, value in zip(self._rows.series, self._rows.texts(), strict=True)]
        )


def _states(held: str | None, known: tuple[str, ...], zeros: bool) -> list[tuple[str, int]]:
    """The (state, value) series of a resource in `held`: see StateFamily."""
    states = [(state, 1 if state == held else 0) for state in known] if zeros else []
    if held and (held not in known or not zeros):
        states.append((held, 1))
    return states


class _StateBlocks:
    """The rendered lines of one resource in one state family, by its `{id="..."}` text and held
    state: they stay the same while the resource holds the state, so they are kept (LRU) across
    scrapes. One per (family, known states, zeros), so the cache key is two strings."""

    def __init__(self, exposed: str, known: tuple[str, ...], zeros: bool) -> None:
        self._exposed, self._known, self._zeros = exposed, known, zeros
        self.block = lru_cache(maxsize=CACHED_RESOURCES)(self._render)

    def _render(self, labels: str, held: str | None) -> str:
        start = f'{self._exposed}{labels[:-1]},state="'  # "state" sorts after "id"
        return "".join([f'{start}{_escape_value(state)}"}} {go_float(value)}\n'
                        for state, value in _states(held, self._known, self._zeros)])


@lru_cache(maxsize=64)
def _state_blocks(exposed: str, known: tuple[str, ...], zeros: bool) -> _StateBlocks:
    return _StateBlocks(exposed, known, zeros)


class StateFamily(FastFamily):
    """A gauge of which state each resource is in: `{id, state}` series, 1 for the held one.

    With `zeros` (prometheus-pve-exporter's way) every `known` state gets a series, 0 where not
    held; a held state outside `known` still gets its 1. Rows are kept per resource, in runs of
    one `known`, and written from the blocks `_StateBlocks` keeps across scrapes.
    """

    def __init__(self, name: str, documentation: str, zeros: bool) -> None:
        super().__init__(name, documentation)
        self._zeros = zeros
        self._runs: list[tuple[tuple[str, ...], list[Series], list[str | None]]] = []

    def add_states(self, series: Iterable[Series], held: Iterable[str | None], known: tuple[str, ...]) -> None:
        """Each resource of `series` (labelled by `id` alone) holds its state in `held`, in order; a
        state that is not a string renders as its text."""
        if not self._runs or self._runs[-1][0] != known:
            self._runs.append((known, [], []))
        run_series, run_held = self._runs[-1][1], self._runs[-1][2]
        for one, state in zip(series, held, strict=True):
            run_series.append(one)
            run_held.append(state if state is None or type(state) is str else str(state))

    @property
    def samples(self) -> list[Sample]:
        name = self._sample_name
        return [Sample(name, {**series.labels, "state": state}, value)
                for known, run_series, run_held in self._runs
                for series, held in zip(run_series, run_held, strict=True)
                for state, value in _states(held, known, self._zeros)]

    @samples.setter
    def samples(self, samples: list[Sample]) -> None:
        FastFamily.samples.fset(self, samples)  # type: ignore[attr-defined]
        self._runs = []

    def _blocks(self) -> list[str]:
        exposed = escape_metric_name(self._sample_name)
        blocks = [self._head(exposed)]
        for known, run_series, run_held in self._runs:
            blocks.extend(map(_state_blocks(exposed, known, self._zeros).block,
                              [series.text for series in run_series], run_held))
        return blocks

    def text(self) -> str:
        return "".join(self._blocks())

    def encoded(self, kept: KeptTexts | None = None) -> Part:
        """`text()` as UTF-8. With `kept`: while no resource changes its state, the same bytes
        object as the last scrape's, so what is made of them (their gzip) can be kept too."""
        blocks = self._blocks()
        if kept is None:
            return Part("".join(blocks).encode("utf-8"), kept=False)
        return kept.encoded((len(blocks), blocks[0], blocks[-1]), blocks, lambda: "".join(blocks))


class _Only:
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def encode_parts(metrics: Iterable[Metric], kept: KeptTexts | None = None) -> Iterator[Part]:
    """The text format (0.0.4) of `metrics`, one family at a time: generate_latest's bytes, faster
    for FastFamily; with `kept`, an unchanged FastFamily is the last scrape's bytes object."""
    for metric in metrics:
        yield metric.encoded(kept) if isinstance(metric, FastFamily) else Part(generate_latest(_Only(metric)), kept=False)


def encode(metrics: Iterable[Metric], kept: KeptTexts | None = None) -> bytes:
    """The text format (0.0.4) of `metrics` (`encode_parts`, joined)."""
    return b"".join([part.text for part in encode_parts(metrics, kept)])
