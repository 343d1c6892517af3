"""Advice for people (our plan, then the AI plan beside it, then what was rejected and why)
and for programs (JSON: both plans in the planner.report schema, docs/advisor.md)."""

from __future__ import annotations

from typing import Any

from planner.report import plan_to_dict, render_table

from .advice import Advice


def render_advice(advice: Advice) -> str:
    own, settings = advice.cycle.plan, advice.settings
    lines = ["== pvebalance plan ==", render_table(own)]
    lines += [f"warning: {w}" for w in advice.cycle.warnings]
    if advice.ai_plan is None:
        lines.append(f"== AI plan: none ==\n{advice.error}")
        return "\n".join(lines) + "\n"
    ai = advice.ai_plan
    lines.append(
        f"== AI plan ({settings.provider} {settings.model}): {len(ai.moves)} of {advice.suggested} suggestion(s) "
        f"passed pvebalance's checks; imbalance {ai.imbalance_before:.3f} -> {ai.imbalance_after:.3f} "
        f"(pvebalance's plan: {own.imbalance_after:.3f}) =="
    )
    if advice.comment:
        lines.append(f"Model's summary: {advice.comment}")
    lines.append(render_table(ai))
    if advice.rejected:
        lines.append(f"Rejected ({len(advice.rejected)}):")
        lines += [f"  #{r.position} {r.vmid} -> {r.target or '?'}: {r.why}" + (f"  (model: {r.reason})" if r.reason else "")
                  for r in advice.rejected]
        lines.append("")
    lines.append("Nothing was migrated. To carry the AI plan out: advise --output FILE, then apply --plan FILE "
                 "(re-checked against the cluster as it is then).")
    return "\n".join(lines) + "\n"


def advice_to_dict(advice: Advice) -> dict[str, Any]:
    return {
        "provider": advice.settings.provider,
        "model": advice.settings.model,
        "plan": plan_to_dict(advice.cycle.plan),
        "warnings": list(advice.cycle.warnings),
        "ai_plan": plan_to_dict(advice.ai_plan) if advice.ai_plan is not None else None,
        "suggested": advice.suggested,
        "rejected": [
            {"position": r.position, "vmid": r.vmid, "target": r.target, "reason": r.reason, "why": r.why, "category": r.category}
            for r in advice.rejected
        ],
        "comment": advice.comment,
        "error": advice.error,
        "tokens": {"input": advice.input_tokens, "output": advice.output_tokens},
    }
