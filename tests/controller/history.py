"""Hand-written exporter history for controller tests: the series pvebalance-exporter publishes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from testkit.prometheus import Sample

GIB = 1024**3


def exporter_samples(
    ids: Mapping[str, tuple[int, int]],
    cpu: Callable[[str, int], float],
    mem: Callable[[str, int], float],
    start: float,
    end: float,
    step: float = 60.0,
    labels: Mapping[str, str] | None = None,
) -> Iterator[Sample]:
    """Samples every `step` from `start` to `end` for each id -> (vcpus, memory size).

    `cpu(id, i)` is the ratio and `mem(id, i)` the bytes used at the i-th sample.
    """
    extra = dict(labels or {"job": "pve", "instance": "exporter:9221"})
    count = int((end - start) // step) + 1
    for resource_id, (vcpus, size) in ids.items():
        series = {"id": resource_id, **extra}
        for i in range(count):
            ts = start + i * step
            yield "pve_cpu_usage_ratio", series, ts, cpu(resource_id, i)
            yield "pve_cpu_usage_limit", series, ts, float(vcpus)
            yield "pve_memory_usage_bytes", series, ts, mem(resource_id, i)
            yield "pve_memory_size_bytes", series, ts, float(size)
