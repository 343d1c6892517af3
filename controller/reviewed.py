"""Plans people review: the plan document with its id, saving it, and carrying out exactly a
reviewed plan (`apply --plan FILE`; the operator API's "apply plan {id}" calls the same code).

A reviewed plan is never re-planned: its moves run in its order, each re-validated against the
live cluster right before it starts (the executor's re-check: the guest is still where the plan
found it, the target online, no node over its memory limit, no hard rule broken, no cooldown);
a move that no longer fits is dropped with the reason, the others still run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import Config
from controller.cycle import Cycle, cycle_rules
from controller.executor import ApplyReport, Executor
from controller.observe import Observation, observe
from controller.promql import PromQL
from planner.identity import inputs_digest, moves_key, plan_id
from planner.model import Plan
from planner.report import plan_from_dict, plan_to_dict
from planner.rules import RuleSet
from pveapi.client import PveClient
from pveapi.errors import ConfigError


@dataclass(frozen=True)
class Reviewed:
    """A plan as someone read it: its moves in order and its id."""

    plan: Plan
    plan_id: str


def plan_document(cycle: Cycle, config: Config, plan: Plan | None = None) -> dict[str, Any]:
    """The plan JSON (docs/plan-schema.md) with its id and the digest of what it was made from:
    the cycle's own plan, or another `plan` made from the same observation (the AI advisor's)."""
    plan = cycle.plan if plan is None else plan
    inputs = inputs_digest(cycle.model, cycle.rules, config.policy)
    return {
        **plan_to_dict(plan),
        "plan_id": plan_id(inputs, plan.moves),
        "inputs_digest": inputs,
        "warnings": list(cycle.warnings),
    }


def reviewed_from(document: Any, where: str) -> Reviewed:
    """A saved plan document, checked: every field (planner.report) and its id, which must be
    the id of its moves (a plan edited after it was shown is not the plan that was reviewed)."""
    try:
        plan = plan_from_dict(document)
    except ConfigError as exc:
        raise ConfigError(f"{where}: not a usable saved plan: {exc}") from None
    shown, inputs = document.get("plan_id"), document.get("inputs_digest")
    if not isinstance(shown, str) or not isinstance(inputs, str):
        raise ConfigError(f"{where}: the plan has no plan_id/inputs_digest; save it again with `pvebalance plan --save FILE`")
    if plan_id(inputs, plan.moves) != shown:
        raise ConfigError(f"{where}: its moves do not match its plan id {shown} (edited?); make and review a fresh plan")
    return Reviewed(plan, shown)


def read_reviewed(path: Path) -> Reviewed:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--plan {path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError(f"--plan {path}: not a usable saved plan: {exc}") from None
    return reviewed_from(document, f"--plan {path}")


def apply_reviewed(
    reviewed: Reviewed,
    client: PveClient,
    promql: PromQL | None,
    config: Config,
    hold: Mapping[int, str],
    executor: Callable[[RuleSet], Executor],
    observation: Observation | None = None,
) -> ApplyReport:
    """Carry out exactly `reviewed`: on a fresh `observation` (read here unless the caller just
    read one), with every rule a fresh plan would honour (config, HA rules, guests to leave
    alone, cooldowns), each move re-validated right before it starts; a move that no longer
    fits is dropped with its reason."""
    observation = observe(client, promql) if observation is None else observation
    rules = cycle_rules(config, observation, hold)
    return executor(rules).apply(reviewed.plan, observation.model)


def last_saved_path(config: Config) -> Path:
    """Where `plan --save` notes the last plan it saved, for a fresh `apply` to compare with."""
    state = config.run.state_file
    return state.with_name(state.name + ".last-plan.json")


def differs_from_last_saved(config: Config, fresh: Plan, fresh_id: str) -> str | None:
    """A sentence when the last plan saved with `plan --save` would migrate differently."""
    try:
        document = json.loads(last_saved_path(config).read_text(encoding="utf-8"))
        saved = reviewed_from(document, "last saved plan")
    except (OSError, ValueError, ConfigError, AttributeError):
        return None  # none saved yet (or not readable): nothing to compare with
    if moves_key(saved.plan.moves) == moves_key(fresh.moves):
        return None
    before, now = set(moves_key(saved.plan.moves)), set(moves_key(fresh.moves))
    how = (f"{len(now - before)} move(s) not in it, {len(before - now)} of its moves left out"
           if before != now else "the same moves in another order")
    return (
        f"this plan ({fresh_id}) differs from the last saved plan ({saved.plan_id}, {document.get('saved_to')}): {how}; "
        f"to carry out the reviewed one: pvebalance apply --plan {document.get('saved_to')}"
    )
