"""`pvebalance`: plan, check, apply and run. Every error a user can fix is one line, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from controller.check import check
from controller.config import WINDOWS, Config, load_config
from controller.cycle import Cycle, cooldown_holds, cycle_rules, run_cycle
from controller.drain import drain_node, undrain_node
from controller.executor import ApplyReport, Executor
from controller.lease import cluster_lease
from controller.loop import Controller
from controller.metrics import ControllerMetrics
from planner.model import ClusterModel, Move, Plan
from controller.observe import observe
from planner.verify import verify_plan
from controller.promql import PromQL
from planner.report import plan_from_dict, plan_to_dict, render_table
from planner.rules import RuleSet
from controller.server import ControllerServer
from controller.state import ControllerLock, LoopState
from pveapi.client import PveClient
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging

DEFAULT_CONFIG = "/etc/pvebalance/config.yaml"
log = structlog.get_logger("pvebalance")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    acting = args.command in (_apply, _run, _drain, _undrain)
    configure_logging(args.log_format, args.log_level or ("info" if acting else "warning"))
    try:
        return int(args.command(args))
    except PvebalanceError as exc:
        print(f"pvebalance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pvebalance: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pvebalance", description="Rules-driven, history-aware balancer for Proxmox VE")
    parser.add_argument(
        "--config", default=os.environ.get("PVEBALANCE_CONFIG", DEFAULT_CONFIG),
        help=f"config file (default: $PVEBALANCE_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"),
        help="default: info for apply and run (one event per action), warning for plan and check",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    plan = commands.add_parser("plan", help="show a balance plan; changes nothing")
    plan.add_argument("--output", choices=("table", "json"), default="table")
    plan.add_argument("--window", choices=WINDOWS, help="history window (overrides prometheus.window)")
    plan.add_argument("--save", metavar="FILE", help="also write the plan as JSON, for `apply --plan FILE`")
    plan.set_defaults(command=_plan)

    chk = commands.add_parser("check", help="check the config, API token privileges and Prometheus series")
    chk.set_defaults(command=_check)

    apply = commands.add_parser("apply", help="carry out a fresh plan, or a saved one after re-validating it")
    apply.add_argument("--plan", metavar="FILE", help="a plan saved with `plan --save`")
    apply.add_argument("--window", choices=WINDOWS)
    apply.add_argument("--dry-run", action="store_true", help="check every move against live state; migrate nothing")
    apply.set_defaults(command=_apply)

    for name, handler, text in (
        ("drain", _drain, "move every guest off NODE for maintenance; it receives nothing until undrained"),
        ("undrain", _undrain, "end the drain of NODE and bring back the guests that left it"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("node", metavar="NODE")
        sub.add_argument("--dry-run", action="store_true", help="plan and check every move; migrate nothing, remember nothing")
        sub.add_argument("--output", choices=("table", "json"), default="table")
        sub.set_defaults(command=handler)

    run = commands.add_parser("run", help="the balancing loop, with /metrics, /health, /plan and POST /webhook")
    run.add_argument("--dry-run", action="store_true", help="in automatic mode, check moves but migrate nothing")
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.set_defaults(command=_run)
    return parser


def _load(args: argparse.Namespace) -> tuple[Config, PveClient, PromQL | None]:
    config = load_config(args.config)
    window = getattr(args, "window", None)
    if window is not None:
        if config.prometheus is None:
            raise ConfigError("--window needs a prometheus block in the config")
        config = replace(config, prometheus=replace(config.prometheus, window=window))
    promql = PromQL(config.prometheus) if config.prometheus is not None else None
    return config, PveClient(config.proxmox), promql


def _plan(args: argparse.Namespace) -> int:
    config, client, promql = _load(args)
    cycle = run_cycle(client, promql, config, cooldown_holds(client, config), fallback_to_live=True)
    document = _plan_document(cycle)
    if args.save:
        _write_json(Path(args.save), document)
    if args.output == "json":
        print(json.dumps(document, indent=2))
    else:
        print(render_table(cycle.plan))
        for warning in cycle.warnings:
            print(f"warning: {warning}")
    return 0


def _plan_document(cycle: Cycle) -> dict[str, Any]:
    return {**plan_to_dict(cycle.plan), "warnings": list(cycle.warnings)}


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    try:
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--save {path}: cannot write it ({exc.strerror})") from None


def _check(args: argparse.Namespace) -> int:
    try:
        config, client, promql = _load(args)
    except PvebalanceError as exc:
        print(f"problem: {exc}")
        return 1
    result = check(config, client, promql)
    for problem in result.problems:
        print(f"problem: {problem}")
    for note in result.notes:
        print(f"note: {note}")
    if result.problems:
        print(f"{len(result.problems)} problem(s) found")
        return 1
    print("all checks passed: " + "; ".join(result.facts))
    return 0


def _apply(args: argparse.Namespace) -> int:
    config, client, promql = _load(args)
    lock = ControllerLock(config.run.state_file)
    lock.acquire()  # one controller per cluster: a second apply or run says who holds it
    lease = cluster_lease(client, config.run, args.dry_run)
    stop = threading.Event()
    _on_signals(stop.set)  # from here on SIGTERM ends cleanly, giving the lease back
    try:
        state = LoopState.load(config.run.state_file)
        hold = cooldown_holds(client, config, state)
        if args.plan:
            plan, base, rules = _saved_plan(Path(args.plan), config, client, promql, hold)
        else:
            cycle = run_cycle(client, promql, config, hold)
            if not cycle.actionable:
                print(f"not applying: {cycle.why_not}")
                return 1
            plan, base, rules = cycle.plan, cycle.model, cycle.rules
        if not plan.moves:
            print("nothing to do: the plan has no moves")
            return 0
        if lease is not None:
            lease.acquire()  # after the plan: a bad saved plan or nothing to do never touches it
        executor = Executor(
            client, rules, config.policy, config.apply, dry_run=args.dry_run,
            should_stop=stop.is_set, on_event=_Progress(plan.moves), on_moved=state.record_move,
            may_start=lease.confirm if lease is not None else lambda: None,
        )
        report = executor.apply(plan, base)
        print(("dry run: " if args.dry_run else "") + report.summary)
        return 0 if not report.stopped and not report.count("failed") else 1
    finally:
        if lease is not None:
            lease.release()
        lock.release()


def _drain(args: argparse.Namespace) -> int:
    return _drain_or_return(args, drain_node, "drain")


def _undrain(args: argparse.Namespace) -> int:
    return _drain_or_return(args, undrain_node, "undrain")


def _drain_or_return(args: argparse.Namespace, operation: Any, action: str) -> int:
    """`drain` and `undrain`: under the controller lock, the lease taken before the first migration."""
    config, client, promql = _load(args)
    lock = ControllerLock(config.run.state_file)
    lock.acquire()
    lease = cluster_lease(client, config.run, args.dry_run)
    stop = threading.Event()
    _on_signals(stop.set)
    state = LoopState.load(config.run.state_file)

    def executor(rules: RuleSet, plan: Plan) -> Executor:
        if args.output == "table":
            print(render_table(plan))
        if lease is not None:
            lease.acquire()
        return Executor(
            client, rules, config.policy, config.apply, dry_run=args.dry_run, should_stop=stop.is_set,
            on_event=_Progress(plan.moves) if args.output == "table" else lambda event: None,
            on_moved=state.record_move, may_start=lease.confirm if lease is not None else lambda: None,
        )

    try:
        result = operation(args.node, config, client, promql, executor, dry_run=args.dry_run)
    finally:
        if lease is not None:
            lease.release()
        lock.release()
    if args.output == "json":
        print(json.dumps(result.as_dict(action), indent=2))
    else:
        for line in result.lines:
            print(f"stays: {line}")
        done = result.report.summary if result.report is not None else "nothing to move"
        print(("dry run: " if args.dry_run else "") + f"{action} {args.node}: {done}")
    report = result.report
    return 0 if report is None or (not report.stopped and not report.count("failed")) else 1


def _saved_plan(
    path: Path, config: Config, client: PveClient, promql: PromQL | None, hold: Mapping[int, str]
) -> tuple[Plan, ClusterModel, RuleSet]:
    try:
        plan = plan_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"--plan {path}: cannot read it ({exc.strerror})") from None
    except (ValueError, ConfigError) as exc:  # JSON syntax, or a field plan_from_dict names
        raise ConfigError(f"--plan {path}: not a usable saved plan: {exc}") from None
    observation = observe(client, promql)
    rules = cycle_rules(config, observation, hold)
    problems = verify_plan(observation.model, rules, config.policy, plan)
    if problems:
        raise ConfigError(f"--plan {path} no longer fits the cluster: {'; '.join(problems)} - make a fresh plan")
    return plan, observation.model, rules


class _Progress:
    """Terminal progress: each migration's state, with a running summary after each outcome."""

    def __init__(self, moves: Sequence[Move]) -> None:
        self.position = {m.vmid: i for i, m in enumerate(moves, start=1)}
        self.total = len(moves)
        self.counts = dict.fromkeys(("succeeded", "failed", "dropped", "not_started"), 0)

    def __call__(self, event: Mapping[str, Any]) -> None:
        move, kind = event["move"], str(event["event"])
        head = f"[{self.position.get(move.vmid, '?')}/{self.total}] {move.type}/{move.vmid} {move.name} {move.source} -> {move.target}:"
        if kind == "started":
            print(f"{head} started ({event['upid']})", flush=True)
            return
        outcome = event["outcome"]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        took = f" after {outcome.seconds:.0f}s" if outcome.seconds >= 1 else ""
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.counts.items() if n)
        print(f"{head} {kind.replace('_', ' ')}{took} - {outcome.detail}  [{summary}]", flush=True)


def _on_signals(handler: Any) -> None:
    """SIGTERM and SIGINT: start nothing new, let running migrations end, then exit."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: handler())


def _run(args: argparse.Namespace) -> int:
    config, client, promql = _load(args)
    metrics = ControllerMetrics()
    controller = Controller(config, client, promql, metrics=metrics, dry_run=args.dry_run)
    _on_signals(controller.stop)
    if args.once:
        try:
            summary = controller.cycle("once")
        finally:
            controller.release()  # the lease and the lock go back however the cycle ended
        print(f"{summary.result}: {summary.reason}")
        return 0 if summary.result != "failed" else 1
    server = ControllerServer(config.run.listen_address, controller.endpoints())
    server.start()
    try:
        controller.run_forever()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
