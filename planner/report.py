"""A plan for people (a table) and for programs (JSON, schema in docs/plan-schema.md).

`plan_from_dict` is the only way a saved plan comes back in: it validates every field and
raises ConfigError with one line naming the first thing wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pveapi import values
from pveapi.errors import ConfigError

from .model import Cause, Details, Move, MoveKind, NodeLoad, Plan, Skipped, UsageSource
from .policy import GIB

SCHEMA_VERSION = 2


# --- why a move happened --------------------------------------------------------------------


def reason(cause: Cause, details: Details) -> str:
    """The one sentence a user reads for a move: rendered here and nowhere else."""
    d = details
    if cause is Cause.EVACUATION:
        return f"evacuates maintenance node {d['node']}" + (f" with {d['group']}" if "group" in d else "")
    if cause is Cause.REPAIR:
        return _rule(d)
    if cause is Cause.SOFT_RULE:
        if d["problem"] == "node affinity":
            return f"soft rule: should run on {d['nodes']} ({d['rule']})"
        return f"soft rule: {_rule(d)}"
    if cause is Cause.MAKES_ROOM:
        return f"makes room on {d['node']} for {d['for']}"
    if cause is Cause.TRADE:
        via = f", {d['parked']} parked on {d['via']} meanwhile" if "via" in d else ""
        return (f"trade: {d['first']} {d['source']} -> {d['target']} and {d['second']} {d['target']} -> "
                f"{d['source']}{via}; {_loads(d)}")
    prefix = f"relieves {d['source']} (above a high-water mark): " if cause is Cause.RELIEF else ""
    return prefix + _loads(d)


def _rule(d: Details) -> str:
    if d["problem"] == "node affinity":
        return f"{d['rule']} requires {d['nodes']}"
    if d["problem"] == "apart":
        return f"{d['rule']}: shares {d['node']} with {d['other']}"
    return f"{d['rule']}: joins the group on {d['node']}"


def _loads(d: Details) -> str:
    return (f"{d['source']} load {float(d['source_load']):.0%} -> {d['target']} load {float(d['target_load']):.0%}; "
            f"imbalance {float(d['before']):.3f} -> {float(d['after']):.3f}")


# --- table ----------------------------------------------------------------------------------


def render_table(plan: Plan) -> str:
    lines: list[str] = []
    sources = ", ".join(f"{k}: {v} guests" for k, v in sorted(plan.sources.items())) or "none"
    lines.append(f"Data: window {plan.window}; figures from {sources}")
    hottest = max((n for n in plan.nodes_after if n.state == "online"), key=lambda n: (n.load, n.name), default=None)
    lines.append(
        f"Imbalance: {plan.imbalance_before:.3f} -> {plan.imbalance_after:.3f}"
        + (f" (most loaded after: {hottest.name} at {hottest.load:.0%})" if hottest else "")
    )
    lines.append("")
    if plan.moves:
        total = sum(m.est_seconds for m in plan.moves)
        lines.append(f"Moves ({len(plan.moves)}, in this order; estimated {_duration(total)} one at a time):")
        lines += _table(
            ["#", "guest", "type", "from -> to", "kind", "mem", "est", "data", "reason"],
            [
                [str(i), f"{m.vmid} {m.name}", m.type, f"{m.source} -> {m.target}", m.kind.value,
                 f"{m.mem_bytes / GIB:.1f}G", _duration(m.est_seconds), m.usage_source, m.reason]
                for i, m in enumerate(plan.moves, 1)
            ],
        )
    else:
        lines.append("Moves: none")
    lines.append("")
    lines.append("Nodes (before -> after):")
    after = {n.name: n for n in plan.nodes_after}
    lines += _table(
        ["node", "state", "cpu", "memory", "load"],
        [
            [b.name, b.state, f"{b.cpu_ratio:.0%} -> {after[b.name].cpu_ratio:.0%}",
             f"{b.mem_ratio:.0%} -> {after[b.name].mem_ratio:.0%}", f"{b.load:.0%} -> {after[b.name].load:.0%}"]
            for b in plan.nodes_before
            if b.name in after
        ],
    )
    if plan.skipped:
        lines.append("")
        lines.append(f"Skipped ({len(plan.skipped)}):")
        lines += [f"  {s.vmid} {s.name}: {s.reason}" for s in plan.skipped]
    if plan.problems:
        lines.append("")
        lines.append(f"Problems ({len(plan.problems)}):")
        lines += [f"  - {p}" for p in plan.problems]
    if plan.notes:
        lines.append("")
        lines += [f"Note: {n}" for n in plan.notes]
    took = f" in {plan.planning_seconds:.2f} s" if plan.planning_seconds is not None else ""
    lines.append(f"Planned{took}; search effort {plan.search}, {plan.search_rounds} changes tried")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return [fmt.format(*header)] + [fmt.format(*row) for row in rows]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --- JSON -----------------------------------------------------------------------------------


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "window": plan.window,
        "sources": dict(sorted(plan.sources.items())),
        "imbalance": {"before": plan.imbalance_before, "after": plan.imbalance_after},
        "moves": [
            {
                "vmid": m.vmid,
                "name": m.name,
                "type": m.type,
                "source": m.source,
                "target": m.target,
                "kind": m.kind.value,
                "reason": m.reason,
                "mem_bytes": m.mem_bytes,
                "cpu_cores": m.cpu_cores,
                "est_seconds": m.est_seconds,
                "gain": m.gain,
                "usage_source": m.usage_source,
                "cause": m.cause.value,
                "details": dict(m.details),
                "copy_bytes": m.copy_bytes,
            }
            for m in plan.moves
        ],
        "nodes": [
            {"name": b.name, "state": b.state, "maxcpu": b.maxcpu, "maxmem": b.maxmem,
             "before": _load(b), "after": _load(a)}
            for b, a in zip(plan.nodes_before, plan.nodes_after, strict=True)
        ],
        "skipped": [{"vmid": s.vmid, "name": s.name, "reason": s.reason} for s in plan.skipped],
        "problems": list(plan.problems),
        "notes": list(plan.notes),
        "search": {"effort": plan.search, "rounds": plan.search_rounds},
        "planning_seconds": plan.planning_seconds,
    }


def _load(n: NodeLoad) -> dict[str, Any]:
    return {"cpu_cores": n.cpu_cores, "mem_bytes": n.mem_bytes, "vcpus": n.vcpus, "load": n.load}


def plan_from_dict(data: Any) -> Plan:
    """Rebuild a saved plan; ConfigError names the first field that is missing or wrong."""
    root = _obj(data, "plan")
    version = root.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ConfigError(
            f"plan: schema_version {version!r} is not supported (expected {SCHEMA_VERSION}); re-create the plan"
        )
    imbalance = _obj(root.get("imbalance"), "plan.imbalance")
    nodes = _list(root, "nodes", "plan")
    before: list[NodeLoad] = []
    after: list[NodeLoad] = []
    for i, raw in enumerate(nodes):
        at = f"plan.nodes[{i}]"
        node = _obj(raw, at)
        name, state = _str(node, "name", at), _str(node, "state", at)
        if state not in ("online", "maintenance", "offline"):
            raise ConfigError(f"{at}.state: expected online, maintenance or offline, got {state!r}")
        maxcpu, maxmem = _int(node, "maxcpu", at), _int(node, "maxmem", at)
        for part, out in (("before", before), ("after", after)):
            load = _obj(node.get(part), f"{at}.{part}")
            out.append(
                NodeLoad(name, _num(load, "cpu_cores", f"{at}.{part}"), maxcpu, _int(load, "mem_bytes", f"{at}.{part}"),
                         maxmem, _num(load, "load", f"{at}.{part}"), state, _num(load, "vcpus", f"{at}.{part}"))
            )
    node_names = {n.name for n in before}
    moves = []
    for i, raw in enumerate(_list(root, "moves", "plan")):
        at = f"plan.moves[{i}]"
        move = _obj(raw, at)
        kind, gtype = move.get("kind"), move.get("type")
        if kind not in {k.value for k in MoveKind}:
            raise ConfigError(f"{at}.kind: expected mandatory or balance, got {kind!r}")
        if gtype not in ("qemu", "lxc"):
            raise ConfigError(f"{at}.type: expected qemu or lxc, got {gtype!r}")
        source, target = _str(move, "source", at), _str(move, "target", at)
        for key, name in (("source", source), ("target", target)):
            if name not in node_names:
                raise ConfigError(f"{at}.{key}: node {name!r} is not among the plan's nodes")
        if source == target:
            raise ConfigError(f"{at}: source and target are both {source!r}")
        cause = _cause(move, at)
        # A plan written by hand or edited: which one was meant? (The advisor's repairs were saved
        # as mandatory with cause balance before a move's kind came from its cause; such a move
        # is read as its cause says, balance: it waits for a migration window like any other.)
        legacy = (MoveKind(kind), cause) == (MoveKind.MANDATORY, Cause.BALANCE)
        if cause.kind is not MoveKind(kind) and not legacy:
            raise ConfigError(f"{at}.kind: {kind} does not go with cause {cause.value!r}, which is {cause.kind.value}")
        moves.append(
            Move(
                vmid=_int(move, "vmid", at), name=_str(move, "name", at), type=gtype, source=source, target=target,
                reason=_str(move, "reason", at), mem_bytes=_int(move, "mem_bytes", at),
                cpu_cores=_num(move, "cpu_cores", at), est_seconds=_num(move, "est_seconds", at),
                gain=_num(move, "gain", at, low=-values.HUGE),
                usage_source=_usage_source(move, at),
                cause=cause,
                details=_details(move, at),
                copy_bytes=_int(move, "copy_bytes", at),
            )
        )
    skipped = tuple(
        Skipped(_int(s, "vmid", f"plan.skipped[{i}]"), _str(s, "name", f"plan.skipped[{i}]"),
                _str(s, "reason", f"plan.skipped[{i}]"))
        for i, s in enumerate(_obj(x, f"plan.skipped[{j}]") for j, x in enumerate(_list(root, "skipped", "plan")))
    )
    sources = _obj(root.get("sources", {}), "plan.sources")
    search = _obj(root.get("search"), "plan.search")
    return Plan(
        moves=tuple(moves),
        nodes_before=tuple(before),
        nodes_after=tuple(after),
        imbalance_before=_num(imbalance, "before", "plan.imbalance"),
        imbalance_after=_num(imbalance, "after", "plan.imbalance"),
        skipped=skipped,
        problems=tuple(_strings(root, "problems")),
        sources={str(k): _int(sources, k, "plan.sources") for k in sources},
        window=_str(root, "window", "plan"),
        notes=tuple(_strings(root, "notes")),
        search=_str(search, "effort", "plan.search"),
        search_rounds=_int(search, "rounds", "plan.search"),
        planning_seconds=None if root.get("planning_seconds") is None else _num(root, "planning_seconds", "plan"),
    )


def _cause(move: Mapping[str, Any], at: str) -> Cause:
    cause = move.get("cause")
    if cause not in {c.value for c in Cause}:
        raise ConfigError(f"{at}.cause: expected one of {', '.join(c.value for c in Cause)}, got {cause!r}")
    return Cause(cause)


def _details(move: Mapping[str, Any], at: str) -> dict[str, str | int | float]:
    details = _obj(move.get("details"), f"{at}.details")
    for key, value in details.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{at}.details.{key}: expected a string or a number, got {value!r}")
    return dict(details)


def _usage_source(move: Mapping[str, Any], at: str) -> UsageSource:
    source = move.get("usage_source", "prometheus")  # added within version 1: optional
    if source not in ("prometheus", "live"):
        raise ConfigError(f"{at}.usage_source: expected prometheus or live, got {source!r}")
    return source  # type: ignore[no-any-return]


def _obj(value: Any, at: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at}: expected an object, got {type(value).__name__} - is this a pvebalance plan?")
    return value


def _list(data: Mapping[str, Any], key: str, at: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ConfigError(f"{at}.{key}: expected a list, got {type(value).__name__}")
    return value


def _str(data: Mapping[str, Any], key: str, at: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{at}.{key}: expected a non-empty string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, at: str) -> int:
    return values.count(data.get(key), f"{at}.{key}", 0, values.MAX_BYTES)


def _num(data: Mapping[str, Any], key: str, at: str, low: float = 0.0) -> float:
    """Loads, cores and seconds: finite, and never negative in a plan (a gain may be)."""
    return values.number(data.get(key), f"{at}.{key}", low)


def _strings(data: Mapping[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"plan.{key}: expected a list of strings")
    return value
