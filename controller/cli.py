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
from controller.cycle import cooldown_holds, run_cycle
from controller.executor import Executor
from controller.lease import cluster_lease
from controller.loop import Controller
from controller.metrics import ControllerMetrics
from planner.model import Move, Plan
from controller.observe import cluster_identity
from controller.promql import PromQL
from controller.reviewed import apply_reviewed, differs_from_last_saved, last_saved_path, plan_document, read_reviewed
from planner.report import render_table
from planner.rules import RuleSet
from controller.state import ControllerLock, LoopState
from pveapi.client import PveClient
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging

DEFAULT_CONFIG = "/etc/pvebalance/config.yaml"
log = structlog.get_logger("pvebalance")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    acting = args.command in (_apply, _run)
    configure_logging(args.log_format, args.log_level or ("info" if acting else "warning"))
    try:
        code = int(args.command(args))
        sys.stdout.flush()  # here, not at exit: a closed pipe is then caught below
        return code
    except BrokenPipeError:
        # The reader went away (`pvebalance plan | head -1`): stop quietly, as CLI tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe ended
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
    document = plan_document(cycle, config)
    if args.save:
        saved = {**document, "saved_to": str(Path(args.save).resolve())}
        _write_json(Path(args.save), saved, "--save")
        try:
            _write_json(last_saved_path(config), saved, "the note of the last saved plan")
        except ConfigError as exc:
            print(f"warning: {exc}; a fresh `apply` cannot say whether it differs from this plan", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(document, indent=2))
    else:
        _show(cycle.plan, document["plan_id"])
        for warning in cycle.warnings:
            print(f"warning: {warning}")
    return 0


def _show(plan: Plan, plan_id: str) -> None:
    print(f"Plan {plan_id}")
    print(render_table(plan), flush=True)


def _write_json(path: Path, document: Mapping[str, Any], what: str) -> None:
    try:
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write {path} ({exc.strerror})") from None


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
    reviewed = read_reviewed(Path(args.plan)) if args.plan else None
    # A dry run writes nothing: no lock file, no state; it reads the cooldowns it must honour.
    lock = None if args.dry_run else ControllerLock(config.run.state_file)
    if lock is not None:
        lock.acquire()  # one controller per cluster: a second apply or run says who holds it
    lease = cluster_lease(client, config.run, args.dry_run)
    stop = threading.Event()
    _on_signals(stop.set)  # from here on SIGTERM ends cleanly, giving the lease back
    try:
        state = LoopState.load(config.run.state_file, cluster_identity(client), writable=not args.dry_run)
        hold = cooldown_holds(client, config, state)

        def executor(rules: RuleSet, moves: Sequence[Move]) -> Executor:
            if lease is not None:
                lease.acquire()  # after the plan: a bad saved plan or nothing to do never touches it
            return Executor(
                client, rules, config.policy, config.apply, dry_run=args.dry_run,
                should_stop=stop.is_set, on_event=_Progress(moves), on_moved=state.record_move,
                on_not_started=state.forget_move, may_start=lease.confirm if lease is not None else lambda: None,
            )

        if reviewed is not None:
            if not reviewed.plan.moves:
                print("nothing to do: the plan has no moves")
                return 0
            print(f"carrying out the reviewed plan {args.plan}; each move is checked against the live cluster first")
            _show(reviewed.plan, reviewed.plan_id)
            report = apply_reviewed(reviewed, client, promql, config, hold, lambda r: executor(r, reviewed.plan.moves))
        else:
            cycle = run_cycle(client, promql, config, hold)
            if not cycle.actionable:
                print(f"not applying: {cycle.why_not}")
                return 1
            if not cycle.plan.moves:
                print("nothing to do: the plan has no moves")
                return 0
            fresh_id = plan_document(cycle, config)["plan_id"]
            _show(cycle.plan, fresh_id)
            changed = differs_from_last_saved(config, cycle.plan, fresh_id)
            if changed is not None:
                print(f"note: {changed}")
            report = executor(cycle.rules, cycle.plan.moves).apply(cycle.plan, cycle.model)
        print(("dry run: " if args.dry_run else "") + report.summary)
        # A reviewed plan that did not run as reviewed (a move dropped) is not a success either.
        incomplete = report.stopped or report.count("failed") or (reviewed is not None and report.count("dropped"))
        return 1 if incomplete else 0
    finally:
        if lease is not None:
            lease.release()
        if lock is not None:
            lock.release()


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
    controller.read_state()
    _on_signals(controller.stop)
    if args.once:
        try:
            summary = controller.cycle("once")
        finally:
            controller.release()  # the lease and the lock go back however the cycle ended
        print(f"{summary.result}: {summary.reason}")
        return 0 if summary.result != "failed" else 1
    from controller.server import ControllerServer  # the HTTP framework loads only when it serves

    server = ControllerServer(config.run.listen_address, controller.endpoints())
    server.start()
    try:
        controller.run_forever()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
