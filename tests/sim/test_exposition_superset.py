"""Everything prometheus-pve-exporter 3.10 exports, pvebalance-exporter exports too, on the same cluster.

Both scrape one frozen simulator (the demo with replication jobs and a QDevice): prometheus-pve-exporter in its default cluster and node modes
(every collector on, as its defaults are), pvebalance-exporter with its defaults plus
`--collector.config` (the peer's node mode reads each local guest's config; ours asks one call
per guest, so that is a flag). `missing()` lists every family, label name set and series of the
peer's that ours lacks or gives another value; run this file to see the list. Nothing is
allowed for: every series the peer exports by default on this cluster, its 0-valued HA and lock
states included, ours exports with the same labels and value.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collectors import CollectorOptions
from exporter.http import ServeOptions
from tests.exporter.conftest import RunningExporter, module_block, write_config
from tests.support.sim import demo_with_replication, running_simulator

collector = pytest.importorskip("pve_exporter.collector", reason="prometheus-pve-exporter needs Python >= 3.11")

Exposition = dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]


def exposition(text: str) -> Exposition:
    """family name -> (type, {sorted label pairs: value}), per sample name."""
    found: Exposition = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            entry = found.setdefault(sample.name, (family.type, {}))
            entry[1][tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _same(ours: float, peers: float) -> bool:
    return ours == peers or (math.isnan(ours) and math.isnan(peers))


def missing(peer: Exposition, ours: Exposition) -> list[str]:
    """What the peer exports that ours does not: families, types, label name sets, series."""
    gaps: list[str] = []
    for name, (typ, series) in sorted(peer.items()):
        if name not in ours:
            gaps.append(f"family {name} ({typ}, {len(series)} series)")
            continue
        our_type, our_series = ours[name]
        if our_type != typ:
            gaps.append(f"family {name}: type {our_type}, the peer's is {typ}")
        label_sets = {tuple(k for k, _ in labels) for labels in our_series}
        for names in sorted({tuple(k for k, _ in labels) for labels in series} - label_sets):
            gaps.append(f"family {name}: label set {{{', '.join(names)}}}")
        absent = [labels for labels in series if labels not in our_series]
        if absent:
            gaps.append(f"family {name}: {len(absent)} series, e.g. {dict(absent[0])}")
        differ = [labels for labels, value in series.items()
                  if labels in our_series and not _same(our_series[labels], value)]
        if differ:
            gaps.append(f"family {name}: {len(differ)} series with another value, e.g. {dict(differ[0])}: "
                        f"{our_series[differ[0]]}, the peer's {series[differ[0]]}")
    return gaps


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("superset")
    with running_simulator(demo_with_replication(), time_scale=0) as sim:
        config = {"user": sim.token_user, "token_name": sim.token_name, "token_value": sim.token_value,
                  "verify_ssl": sim.ca_path}
        defaults = collector.CollectorsOptions(*([True] * len(collector.CollectorsOptions._fields)))
        peer = collector.collect_pve(config, sim.host, "1", "1", defaults).decode()
        ours = RunningExporter(write_config(tmp / "exporter.yml", {"default": module_block(sim, tmp / "token")}),
                               ServeOptions(CollectorOptions(config=True), max_workers=4))
        try:
            text = ours.get().text
        finally:
            ours.stop()
        yield peer, text


def test_nothing_the_peer_exports_is_missing(both: tuple[str, str]) -> None:
    peer, ours = both
    gaps = missing(exposition(peer), exposition(ours))
    assert not gaps, "missing from pvebalance-exporter:\n" + "\n".join(gaps)


def test_the_diff_does_see_a_missing_family(both: tuple[str, str]) -> None:
    # The check itself can fail: drop one family and one label from ours.
    peer, ours = both
    parsed = exposition(ours)
    del parsed["pve_storage_shared"]
    typ, series = parsed["pve_guest_info"]
    parsed["pve_guest_info"] = (typ, {tuple(p for p in labels if p[0] != "tags"): v for labels, v in series.items()})
    gaps = missing(exposition(peer), parsed)
    assert any(g.startswith("family pve_storage_shared (gauge") for g in gaps)
    assert any(g.startswith("family pve_guest_info: label set {id, name, node, tags, template, type}") for g in gaps)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_scrape(both: tuple[str, str]) -> None:
    done = subprocess.run(["promtool", "check", "metrics"], input=both[1].encode(), capture_output=True, timeout=60)
    # promtool's lint notes (exit 3) are style advice (e.g. counters' units); errors are exit 1.
    assert done.returncode in (0, 3), done.stderr.decode()
    assert b"error" not in done.stderr.lower(), done.stderr.decode()


def test_the_diff_covers_replication_and_the_qdevice(both: tuple[str, str]) -> None:
    # The peer exports them on this cluster, so the diff above compares them series by series.
    peer, ours = exposition(both[0]), exposition(both[1])
    assert set(peer["pve_replication_info"][1]) < set(ours["pve_replication_info"][1])  # ours: every node's jobs
    assert peer["pve_replication_failed_syncs"][1][(("id", "113-0"),)] == 2
    assert peer["pve_qdevice_up"][1] == ours["pve_qdevice_up"][1] == {(("id", "cluster/demo"),): 1}
