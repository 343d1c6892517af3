"""A plan's identity: a digest of what it was made from and of its moves.

`inputs_digest` covers the observed model, the rules and the policy: the same observation,
rules and policy give the same digest, any change in them another. `plan_id` joins it with the
moves, so a saved plan whose moves were edited no longer carries its own id. Pure: the same
arguments always give the same id, in any process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from .model import ClusterModel, Move
from .policy import Policy
from .rules import RuleSet

ID_LENGTH = 16  # hex digits shown: 64 bits, plenty to tell one cluster's plans apart


def inputs_digest(model: ClusterModel, rules: RuleSet, policy: Policy) -> str:
    return _digest({"model": model, "rules": rules, "policy": policy})


def plan_id(inputs: str, moves: Sequence[Move]) -> str:
    """The id of a plan made from `inputs` (an `inputs_digest`) with these moves, in this order."""
    return _digest({"inputs": inputs, "moves": moves_key(moves)})[:ID_LENGTH]


def moves_key(moves: Sequence[Move]) -> list[tuple[int, str, str]]:
    """What a move does, without its figures and wording: guest, from, to, in order. Two plans
    with equal keys migrate the same guests the same way."""
    return [(m.vmid, m.source, m.target) for m in moves]


def _digest(value: Any) -> str:
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """Plain JSON values for dataclasses, enums, mappings and sets, in one fixed order."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, allow_nan=True))
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # exact, and NaN/inf are still text a digest can take
    return value
