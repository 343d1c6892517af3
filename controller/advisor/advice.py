"""The advisor's shell: observe as `plan` does, ask the model, check every suggestion.

`advise` is the one entry point: `pvebalance advise` calls it, and so will the operator API's
`GET /api/v1/advice`. It never migrates anything; a person applies the AI plan with
`apply --plan FILE`, which re-validates it like any saved plan.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

import structlog

from controller.config import Config
from controller.cycle import Cycle, cooldown_holds, run_cycle
from controller.observe import movable
from controller.promql import PrometheusError, PromQL
from planner.model import Plan
from pveapi.client import PveClient
from pveapi.errors import ConfigError

from .answer import AnswerError, Suggestion, instructions, parse_answer
from .metrics import AdvisorMetrics
from .providers import AdvisorError, ask
from .settings import AdvisorSettings
from .summary import build_summary
from .validation import Checked, Rejection, check_suggestions

log = structlog.get_logger("pvebalance.advisor")


@dataclass(frozen=True)
class Advice:
    settings: AdvisorSettings
    cycle: Cycle  # our own plan and what it was made from
    ai_plan: Plan | None  # the valid suggestions; None when the model gave no usable answer
    rejected: tuple[Rejection, ...] = ()
    suggested: int = 0
    comment: str = ""  # the model's own summary sentence
    error: str | None = None  # why there is no AI plan, in one line
    input_tokens: int = 0
    output_tokens: int = 0


def advise(config: Config, client: PveClient, metrics: AdvisorMetrics | None = None) -> Advice:
    settings = config.ai
    if settings is None:
        raise ConfigError(f"{config.source}: no ai block, so the advisor is off - docs/advisor.md shows how to set one up")
    metrics = AdvisorMetrics() if metrics is None else metrics
    promql = _promql(config, settings)
    cycle = run_cycle(client, promql, config, cooldown_holds(client, config), fallback_to_live=True)
    statistic = str(config.prometheus.statistic) if config.prometheus is not None else None
    summary = build_summary(cycle.model, cycle.rules, config.policy, cycle.plan, settings.max_guests,
                            settings.anonymize_names, statistic, _trends(promql, cycle.observation.at))
    started = time.monotonic()
    try:
        reply = ask(settings, instructions(settings.max_suggestions), json.dumps(summary, separators=(",", ":")))
    except AdvisorError as exc:
        metrics.requests.labels(settings.provider, exc.kind).inc()
        log.warning("advisor.failed", provider=settings.provider, model=settings.model, kind=exc.kind, error=str(exc))
        return Advice(settings, cycle, None, error=str(exc))
    finally:
        metrics.latency.labels(settings.provider).observe(time.monotonic() - started)
    metrics.tokens.labels(settings.provider, "input").inc(reply.input_tokens)
    metrics.tokens.labels(settings.provider, "output").inc(reply.output_tokens)
    try:
        suggestions, comment = parse_answer(reply.answer)
    except AnswerError as exc:
        metrics.requests.labels(settings.provider, "malformed").inc()
        log.warning("advisor.malformed", provider=settings.provider, model=settings.model, error=str(exc))
        return Advice(settings, cycle, None, error=f"{settings.where}: {exc}",
                      input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
    metrics.requests.labels(settings.provider, "ok").inc()
    checked = check_suggestions(cycle.model, cycle.rules, config.policy, suggestions, settings.max_suggestions,
                                _refusals(client, cycle, suggestions[: settings.max_suggestions], config))
    _count(metrics, checked, len(suggestions))
    plan = replace(checked.plan, notes=(
        f"suggested by {settings.provider} model {settings.model}; every move checked by pvebalance's plan checker",
    ))
    log.info("advisor.checked", provider=settings.provider, model=settings.model, suggested=len(suggestions),
             valid=len(plan.moves), rejected=len(checked.rejected), input_tokens=reply.input_tokens,
             output_tokens=reply.output_tokens)
    return Advice(settings, cycle, plan, checked.rejected, len(suggestions), comment, None,
                  reply.input_tokens, reply.output_tokens)


def _promql(config: Config, settings: AdvisorSettings) -> PromQL | None:
    if config.prometheus is None:
        return None
    return PromQL(replace(config.prometheus, window=settings.window) if settings.window else config.prometheus)


def _trends(promql: PromQL | None, at: float) -> dict[str, tuple[float, float]] | None:
    """Every guest's and node's slope, or None without Prometheus; {} when it cannot be asked
    (the summary then says null for each: the advice goes on, as planning falls back to live)."""
    if promql is None:
        return None
    try:
        return promql.trends(at)
    except PrometheusError as exc:
        log.warning("advisor.no_trends", error=str(exc))
        return {}


def _refusals(client: PveClient, cycle: Cycle, suggestions: list[Suggestion], config: Config) -> dict[tuple[int, str], str]:
    """The API's migrate precondition for each plausible suggestion (one GET each, bounded by
    ai.max_suggestions), as for the moves of our own plan."""
    guests = {g.vmid: g for g in cycle.model.guests}
    nodes = {n.name for n in cycle.model.nodes}
    pairs = {s.vmid: (guests[s.vmid], s.target) for s in reversed(suggestions)
             if s.vmid in guests and s.target in nodes and s.target != guests[s.vmid].node}
    blocked, _warning = movable(client, pairs.values(), config.policy.allow_local_disks)
    return {(vmid, pairs[vmid][1]): why for vmid, why in blocked.items()}


def _count(metrics: AdvisorMetrics, checked: Checked, made: int) -> None:
    metrics.suggestions.labels("made").inc(made)
    metrics.suggestions.labels("valid").inc(len(checked.plan.moves))
    metrics.suggestions.labels("rejected").inc(len(checked.rejected))
    for rejection in checked.rejected:
        metrics.rejections.labels(rejection.category).inc()
