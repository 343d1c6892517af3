"""`pvebalance-demo`: run the whole pvebalance loop on the simulator's `demo` cluster.

Steps: start the simulator; write the last day of history through the exporter's own
collector into Prometheus TSDB blocks (`pvebalance-exporter backfill`); start the exporter
and Prometheus (from the PATH); run `pvebalance plan`; with --apply, carry the plan out and
show the cluster again. Every process started here is stopped on exit, on Ctrl-C and on
SIGTERM. Without Prometheus the controller plans on live API figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging
from pveapi.progress import duration
from pveapi.values import DAY, HOUR, YEAR, number
from pveapi.version import version_text
from simulator.validation import MAX_TIME_SCALE

from .stack import LocalStack, prometheus_installed

PROG = "pvebalance-demo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_text(PROG))
    parser.add_argument("--apply", action="store_true", help="carry out the plan, then show the cluster again")
    parser.add_argument("--hours", type=float, default=24.0, help="history to backfill (default 24)")
    parser.add_argument("--step", type=float, default=300.0,
                        help="seconds between backfilled samples (default 300: Prometheus' 5 min lookback "
                             "still finds a sample at every instant)")
    parser.add_argument("--time-scale", type=float, default=None,
                        help="simulated seconds per real second (default: the scenario's, 60 for demo)")
    parser.add_argument("--scenario", default="demo", help="simulator scenario: built-in name or file (default demo)")
    parser.add_argument("--stay", action="store_true",
                        help="keep everything running at the end, until Ctrl-C, to look around in Prometheus")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (configs, logs, TSDB)")
    return parser


def run(args: argparse.Namespace, stack: LocalStack) -> int:
    has_prometheus = prometheus_installed()
    sim = stack.start_simulator()
    say("simulator", f"{sim.url} ({args.scenario} scenario: {len(sim.scenario.nodes)} nodes, "
                     f"{len(sim.scenario.guests)} guests, time x{sim.clock.scale:g})")
    if has_prometheus:
        steps = int(args.hours * 3600 // args.step) + 1
        say("history", f"backfilling {args.hours:g} h ({steps} scrapes through the exporter's collector, "
                       "then promtool) ...")
        started = time.monotonic()
        summary = stack.backfill(args.hours, args.step)
        say("history", f"{summary} in {time.monotonic() - started:.0f} s")
    else:
        say("prometheus", "NOT FOUND on the PATH (Debian: apt-get install prometheus): no history, "
                          "the controller plans on live figures from the Proxmox API")
    say("exporter", f"{stack.start_exporter()}/metrics")
    if has_prometheus:
        url = stack.start_prometheus()
        say("prometheus", f"{url} (scrapes the exporter every 5 s; rules from prometheus/rules)")
        started = time.monotonic()
        say("history", f"recording rules: {stack.backfill_rules(args.step)} backfilled with promtool "
                       f"in {time.monotonic() - started:.0f} s")
        show_nodes(stack, "the cluster now")
    heading(f"pvebalance plan ({'1h averages from Prometheus' if has_prometheus else 'live figures'})")
    plan_and_scale(stack, sim.clock.scale)
    if not args.apply:
        print("\nTo carry this plan out: bash scripts/demo.sh --apply", flush=True)
    else:
        heading("pvebalance apply")
        code = stack.pvebalance("apply", "--log-level=warning").returncode  # its progress says what happens
        if code != 0:
            print(f"(pvebalance apply exited with {code})", flush=True)
        if has_prometheus:
            time.sleep(12)  # two scrape and rule intervals, so Prometheus shows the new placement
            show_nodes(stack, "the cluster after the moves")
        heading("pvebalance plan again")
        plan_and_scale(stack, sim.clock.scale)
    if args.stay:
        show_api(stack)
        print(f"\nEverything is still running; configs and logs in {stack.workdir}. Ctrl-C stops it all.", flush=True)
        signal.pause()
    return 0


def show_api(stack: LocalStack) -> None:
    """`pvebalance run` (manual automation) with the operator API, and how to call it."""
    api = f"{stack.start_controller(automation='manual')}/api/v1"
    viewer = stack.workdir / "api_viewer.token"
    say("controller", f"{api} (the operator API, docs/api.md; tokens in {viewer} and "
                      f"{stack.workdir / 'api_operator.token'})")
    print(f'  curl -s -H "Authorization: Bearer $(cat {viewer})" {api}/plan', flush=True)


def plan_and_scale(stack: LocalStack, scale: float) -> None:
    """`pvebalance plan`, then its estimate in this simulator's wall time: the plan estimates in
    cluster time, and the simulator's clock runs `scale` times faster."""
    saved = stack.workdir / "plan.json"
    stack.pvebalance("plan", "--save", str(saved))
    try:
        total = sum(float(m["est_seconds"]) for m in json.loads(saved.read_text(encoding="utf-8"))["moves"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # the plan failed and said why
    if total and scale != 1:
        print(f"(times above are simulated cluster time; this simulator runs x{scale:g}, so the estimated "
              f"{duration(total)} takes about {duration(total / scale)} of wall time here)", flush=True)


def show_nodes(stack: LocalStack, title: str) -> None:
    """Live node figures from the recording rules the dashboards use."""
    def by_node(expr: str) -> dict[str, float]:
        return {r["metric"].get("node", ""): float(r["value"][1]) for r in stack.query(expr)}

    cpu, mem = by_node("pvebalance:node_cpu:ratio"), by_node("pvebalance:node_memory:ratio")
    guests = by_node("pvebalance:node_running_guests:count")
    imbalance = by_node("pvebalance:cluster_imbalance:ratio").get("")
    heading(f"{title} (live, from Prometheus)")
    print(f"  {'node':<6} {'cpu':>5} {'memory':>7} {'guests':>7}")
    for node in sorted(cpu):
        print(f"  {node:<6} {cpu[node]:>5.0%} {mem.get(node, 0):>7.0%} {guests.get(node, 0):>7.0f}")
    print(f"  imbalance {'unknown' if imbalance is None else f'{imbalance:.3f}'} (0 = even, 1 = all on one node)",
          flush=True)


def say(what: str, text: str) -> None:
    print(f"{what:<11} {text}", flush=True)


def heading(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:  # NaN, infinity and the absurd, before anything starts
        number(args.hours, "--hours", 0, YEAR / HOUR)
        number(args.step, "--step", 0, DAY)
        if args.time_scale is not None:
            number(args.time_scale, "--time-scale", 0, MAX_TIME_SCALE)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    if args.hours <= 0 or args.step <= 0:
        print(f"{PROG}: --hours and --step must be positive", file=sys.stderr)
        return 2
    configure_logging("console", "warning")
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="pvebalance-demo-"))
    stack = LocalStack(workdir, args.scenario, args.time_scale)
    try:
        return run(args, stack)
    except PvebalanceError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        for name in ("exporter", "prometheus"):
            tail = stack.children.log_tail(name)
            if tail:
                print(f"--- last lines of the {name} log ---\n{tail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: stopped", file=sys.stderr)
        return 130
    finally:
        stack.close()
        if args.keep:
            print(f"kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
