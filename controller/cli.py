"""`pvebalance`: plan, check, apply and run. Every error a user can fix is one line, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from controller.advisor.advice import advise
from controller.advisor.report import advice_to_dict, render_advice
from controller.check import check
from controller.config import WINDOWS, Config, load_config
from controller.cycle import cooldown_holds, run_cycle
from controller.drain import drain_node, undrain_node
from controller.executor import Executor
from controller.lease import cluster_lease
from controller.loop import Controller
from controller.metrics import ControllerMetrics
from controller.observe import cluster_identity
from controller.outcomes import OutcomeLog, record_report
from controller.promql import PromQL
from controller.reviewed import apply_reviewed, differs_from_last_saved, last_saved_path, plan_document, read_reviewed
from controller.state import ControllerLock, LoopState
from planner.model import Move, Plan
from planner.report import render_table
from planner.rules import RuleSet
from pveapi.client import PveClient
from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging
from pveapi.progress import Progress, duration
from pveapi.version import version_text

DEFAULT_CONFIG = "/etc/pvebalance/config.yaml"
PLAN_QUIET = 2.0  # seconds a plan may take before its progress shows (most take less)
log = structlog.get_logger("pvebalance")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    acting = args.command in (_apply, _run, _drain, _undrain)
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


def _global_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name. Only the main parser has
    defaults: a command's parser leaves a value given before the command alone."""
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--config", default=default(None), metavar="FILE",
        help=f"config file (default: $PVEBALANCE_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default=default("auto"))
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=default(None),
        help="default: info for apply and run (one event per action), warning for plan and check",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pvebalance", description="Rules-driven, history-aware balancer for Proxmox VE")
    parser.add_argument("--version", action="version", version=version_text("pvebalance"))
    _global_options(parser, defaults=True)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    plan = commands.add_parser("plan", help="show a balance plan; changes nothing")
    plan.add_argument("--output", choices=("table", "json"), default="table")
    plan.add_argument("--window", choices=WINDOWS, help="history window (overrides prometheus.window)")
    plan.add_argument("--save", metavar="FILE", help="also write the plan as JSON, for `apply --plan FILE`")
    _global_options(plan, defaults=False)
    plan.set_defaults(command=_plan)

    chk = commands.add_parser("check", help="check the config, API token privileges and Prometheus series")
    _global_options(chk, defaults=False)
    chk.set_defaults(command=_check)

    apply = commands.add_parser("apply", help="carry out a fresh plan, or a saved one after re-validating it")
    apply.add_argument("--plan", metavar="FILE", help="a plan saved with `plan --save`")
    apply.add_argument("--window", choices=WINDOWS)
    apply.add_argument("--dry-run", action="store_true", help="check every move against live state; migrate nothing")
    _global_options(apply, defaults=False)
    apply.set_defaults(command=_apply)

    advise = commands.add_parser("advise", help="ask the AI advisor (ai: block) for a second opinion, every move checked")
    advise.add_argument("--window", choices=WINDOWS, help="history window (overrides ai.window and prometheus.window)")
    advise.add_argument("--format", choices=("table", "json"), default="table")
    advise.add_argument("--output", metavar="FILE", help="write the AI plan as JSON, for `apply --plan FILE`")
    advise.set_defaults(command=_advise)
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
    _global_options(run, defaults=False)
    run.set_defaults(command=_run)
    return parser


def _config_source(args: argparse.Namespace) -> tuple[str, str]:
    """The config file to read, and what to do when it cannot be read, as the user chose it."""
    if args.config is not None:
        return args.config, "check the path given with --config"
    if os.environ.get("PVEBALANCE_CONFIG"):
        return os.environ["PVEBALANCE_CONFIG"], "check the path in PVEBALANCE_CONFIG, or pass --config"
    return DEFAULT_CONFIG, "pass --config FILE or set PVEBALANCE_CONFIG"


def _load(args: argparse.Namespace) -> tuple[Config, PveClient, PromQL | None]:
    path, hint = _config_source(args)
    config = load_config(path, hint=hint)
    window = getattr(args, "window", None)
    if window is not None:
        if config.prometheus is None:
            raise ConfigError("--window needs a prometheus block in the config")
        config = replace(config, prometheus=replace(config.prometheus, window=window))
    promql = PromQL(config.prometheus) if config.prometheus is not None else None
    return config, PveClient(config.proxmox), promql


def _plan(args: argparse.Namespace) -> int:
    config, client, promql = _load(args)
    with Progress("plan", quiet_for=PLAN_QUIET) as progress:
        progress.update(note="reading cooldowns from the cluster's task list")
        hold = cooldown_holds(client, config)
        cycle = run_cycle(client, promql, config, hold, fallback_to_live=True, on_step=_noting(progress))
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


def _advise(args: argparse.Namespace) -> int:
    path, hint = _config_source(args)
    config = load_config(path, hint=hint)
    if config.ai is not None and args.window is not None:
        config = replace(config, ai=replace(config.ai, window=args.window))
    advice = advise(config, PveClient(config.proxmox))
    if args.output and advice.ai_plan is not None:
        _write_json(Path(args.output), plan_document(advice.cycle, config, advice.ai_plan), "--output")
    if args.format == "json":
        print(json.dumps(advice_to_dict(advice), indent=2))
    else:
        print(render_advice(advice), end="")
    return 0 if advice.error is None else 1


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
        with Progress("apply: preparing", quiet_for=PLAN_QUIET) as progress:
            progress.update(note="reading cooldowns from the state file and the cluster's task list")
            state = LoopState.load(config.run.state_file, cluster_identity(client), writable=not args.dry_run)
            outcomes = OutcomeLog.load(config.run.state_file, config.run.outcomes_kept, writable=not args.dry_run)  # before migrating: a bad file stops here
            hold = cooldown_holds(client, config, state)
            cycle = None if reviewed is not None else run_cycle(client, promql, config, hold, on_step=_noting(progress))
        plan = reviewed.plan if reviewed is not None else cycle.plan if cycle is not None else None
        if cycle is not None and not cycle.actionable:
            print(f"not applying: {cycle.why_not}")
            return 1
        if plan is None or not plan.moves:
            print("nothing to do: the plan has no moves")
            return 0
        apply_progress = _ApplyProgress(plan.moves)

        def executor(rules: RuleSet) -> Executor:
            if lease is not None:
                lease.acquire()  # after the plan: a bad saved plan or nothing to do never touches it
            return Executor(
                client, rules, config.policy, config.apply, dry_run=args.dry_run,
                should_stop=stop.is_set, on_event=apply_progress, on_moved=state.record_move,
                on_not_started=state.forget_move, may_start=lease.confirm if lease is not None else lambda: None,
            )

        with apply_progress:
            if reviewed is not None:
                print(f"carrying out the reviewed plan {args.plan}; each move is checked against the live cluster first")
                _show(reviewed.plan, reviewed.plan_id)
                report = apply_reviewed(reviewed, client, promql, config, hold, executor)
            else:
                assert cycle is not None
                fresh_id = plan_document(cycle, config)["plan_id"]
                _show(cycle.plan, fresh_id)
                changed = differs_from_last_saved(config, cycle.plan, fresh_id)
                if changed is not None:
                    print(f"note: {changed}")
                report = executor(cycle.rules).apply(cycle.plan, cycle.model)
        if not args.dry_run:
            record_report(outcomes, plan, report, time.time())
        print(("dry run: " if args.dry_run else "") + report.summary)
        # A reviewed plan that did not run as reviewed (a move dropped) is not a success either.
        incomplete = report.stopped or report.count("failed") or (reviewed is not None and report.count("dropped"))
        return 1 if incomplete else 0
    finally:
        if lease is not None:
            lease.release()
        if lock is not None:
            lock.release()


def _noting(progress: Progress) -> Callable[[str], None]:
    return lambda step: progress.update(note=step)


def _drain(args: argparse.Namespace) -> int:
    return _drain_or_return(args, drain_node, "drain")


def _undrain(args: argparse.Namespace) -> int:
    return _drain_or_return(args, undrain_node, "undrain")


def _drain_or_return(args: argparse.Namespace, operation: Any, action: str) -> int:
    """`drain` and `undrain`: under the controller lock, the lease taken before the first migration."""
    config, client, promql = _load(args)
    lock = None if args.dry_run else ControllerLock(config.run.state_file)  # a dry run writes nothing
    if lock is not None:
        lock.acquire()
    lease = cluster_lease(client, config.run, args.dry_run)
    stop = threading.Event()
    _on_signals(stop.set)
    state = LoopState.load(config.run.state_file, cluster_identity(client), writable=not args.dry_run)
    shown = ExitStack()  # each executor's progress display, closed when the operation ends

    def executor(rules: RuleSet, plan: Plan) -> Executor:
        if args.output == "table":
            print(render_table(plan))
        if lease is not None:
            lease.acquire()
        return Executor(
            client, rules, config.policy, config.apply, dry_run=args.dry_run, should_stop=stop.is_set,
            on_event=shown.enter_context(_ApplyProgress(plan.moves)) if args.output == "table" else lambda event: None,
            on_moved=state.record_move, on_not_started=state.forget_move,
            may_start=lease.confirm if lease is not None else lambda: None,
        )

    try:
        with shown:
            result = operation(args.node, config, client, promql, executor, dry_run=args.dry_run)
    finally:
        if lease is not None:
            lease.release()
        if lock is not None:
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


class _ApplyProgress:
    """Apply's terminal progress: a line for each migration's start and outcome (with a running
    summary), and while migrations run, a bar or periodic line saying which and for how long."""

    def __init__(self, moves: Sequence[Move]) -> None:
        self.position = {m.vmid: i for i, m in enumerate(moves, start=1)}
        self.total = len(moves)
        self.counts = dict.fromkeys(("succeeded", "failed", "dropped", "not_started"), 0)
        self.running: dict[int, str] = {}
        self.progress = Progress("apply", self.total, "moves", stream=sys.stdout)

    def __enter__(self) -> _ApplyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.close("stopped" if exc[0] is not None else "done")

    def __call__(self, event: Mapping[str, Any]) -> None:
        move, kind = event["move"], str(event["event"])
        name = f"{move.type}/{move.vmid} {move.name} {move.source} -> {move.target}"
        head = f"[{self.position.get(move.vmid, '?')}/{self.total}] {name}:"
        if kind == "running":
            transferred = f", {event['transferred']}" if event.get("transferred") else ""
            self.running[move.vmid] = f"{name} running {duration(float(event['seconds']))}{transferred}"
            self.progress.update(note="; ".join(self.running.values()))
            return
        if kind == "started":
            self.running[move.vmid] = f"{name} started"
            self.progress.say(f"{head} started ({event['upid']})")
            return
        outcome = event["outcome"]
        self.running.pop(move.vmid, None)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        took = f" after {outcome.seconds:.0f}s" if outcome.seconds >= 1 else ""
        summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.counts.items() if n)
        self.progress.say(f"{head} {kind.replace('_', ' ')}{took} - {outcome.detail}  [{summary}]")
        self.progress.update(sum(self.counts.values()), "; ".join(self.running.values()))


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
    if threading.current_thread() is threading.main_thread():  # SIGHUP (systemctl reload): re-read the config
        signal.signal(signal.SIGHUP, lambda _signum, _frame: threading.Thread(
            target=controller.reload, args=(lambda: _load(args),), name="reload", daemon=True).start())
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
