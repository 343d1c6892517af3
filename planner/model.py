"""The planner's input and output: one home for the cluster model, a move and a plan.

Nodes and guests are `pveapi.inventory` types; this module adds what the planner needs on
top (demand figures with their source) and what it produces (moves, plans).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from pveapi.inventory import Guest, GuestType, Node

UsageSource = Literal["prometheus", "live"]

DEFAULT_WINDOW = "1h"  # the history window plans are made over unless the config says otherwise


@dataclass(frozen=True)
class Usage:
    """Demand of one guest or node, as the planner counts it."""

    cpu_cores: float
    mem_bytes: int
    source: UsageSource


@dataclass(frozen=True)
class ClusterModel:
    """Everything the planner sees. Built by `observe`, never by the planner."""

    nodes: tuple[Node, ...]
    guests: tuple[Guest, ...]
    guest_usage: Mapping[int, Usage]  # vmid -> demand; every guest has an entry
    node_usage: Mapping[str, Usage]  # node demand: its current guests + the host's own use (observe._node_usage)
    maintenance: frozenset[str] = frozenset()  # nodes reported in HA maintenance
    pinned_local: frozenset[int] = frozenset()  # guests the API would refuse to move (local disks/resources)
    window: str = DEFAULT_WINDOW  # the history window the figures cover ("live" when none)
    # node -> CPU + memory PSI `some` over the window (fractions of time, 0..2); absent: no stall known
    node_pressure: Mapping[str, float] = field(default_factory=dict)
    # vmid -> the guest's own CPU + memory PSI `some` over the window: which guests stall most
    guest_pressure: Mapping[int, float] = field(default_factory=dict)


class MoveKind(str, Enum):
    MANDATORY = "mandatory"  # repairs a broken rule or evacuates a maintenance node
    BALANCE = "balance"


class Cause(str, Enum):
    """Why a move is in the plan. The details that go with each are listed in docs/plan-schema.md;
    `planner.report.reason` turns a cause and its details into the sentence users read."""

    EVACUATION = "evacuation"  # leaves a node in maintenance
    REPAIR = "repair"  # a hard rule the current placement breaks
    MAKES_ROOM = "makes room"  # frees room on a node for a mandatory move
    RELIEF = "relief"  # takes load off a node above a high-water mark
    SOFT_RULE = "soft rule"  # a soft rule, repaired while it costs little balance
    BALANCE = "balance"  # lowers the imbalance by more than the move costs
    TRADE = "trade"  # two guests trade places (one reason for all the moves of the trade)

    @property
    def kind(self) -> MoveKind:
        return MoveKind.MANDATORY if self in _MANDATORY else MoveKind.BALANCE


_MANDATORY = frozenset({Cause.EVACUATION, Cause.REPAIR, Cause.MAKES_ROOM})

Details = Mapping[str, "str | int | float"]  # what a cause is about: nodes, loads, rule labels, guests


@dataclass(frozen=True)
class Why:
    """A cause and its details: what a strategy hands the context with a move."""

    cause: Cause
    details: Details = field(default_factory=dict)


@dataclass(frozen=True)
class Move:
    vmid: int
    name: str
    type: GuestType
    source: str
    target: str
    reason: str  # one sentence a user can read: why this guest, why this target
    mem_bytes: int
    cpu_cores: float
    est_seconds: float  # estimated migration time
    gain: float = 0.0  # imbalance reduction this step brings
    usage_source: UsageSource = "prometheus"  # where this guest's demand figures came from
    cause: Cause = Cause.BALANCE
    details: Details = field(default_factory=dict)
    copy_bytes: int = 0  # what the migration copies: memory of a running guest plus local disks

    @property
    def kind(self) -> MoveKind:
        """Mandatory or balance: what its cause is (one home, so the two never disagree)."""
        return self.cause.kind


@dataclass(frozen=True)
class NodeLoad:
    name: str
    cpu_cores: float
    maxcpu: int
    mem_bytes: int
    maxmem: int
    load: float  # weighted CPU/memory utilisation, 0..1+
    state: str = "online"  # online, maintenance or offline: only online nodes count for imbalance
    vcpus: float = 0.0  # vCPUs of the running guests placed on the node

    @property
    def cpu_ratio(self) -> float:
        return self.cpu_cores / self.maxcpu if self.maxcpu else 0.0

    @property
    def mem_ratio(self) -> float:
        return self.mem_bytes / self.maxmem if self.maxmem else 0.0


@dataclass(frozen=True)
class Skipped:
    vmid: int
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    moves: tuple[Move, ...]  # in execution order; feasible after every step
    nodes_before: tuple[NodeLoad, ...]
    nodes_after: tuple[NodeLoad, ...]
    imbalance_before: float  # Proxmox CRS definition, 0..1
    imbalance_after: float
    skipped: tuple[Skipped, ...] = ()
    problems: tuple[str, ...] = ()  # rules that cannot be satisfied, and why
    sources: Mapping[str, int] = field(default_factory=dict)  # data source -> guest count
    window: str = DEFAULT_WINDOW
    notes: tuple[str, ...] = ()  # why balancing did or did not run, in a sentence each
    search: str = "off"  # the search effort the plan was made with (Policy.search)
    search_rounds: int = 0  # changes the local search tried (0: it did not run)
    planning_seconds: float | None = None  # measured by the caller: the planner reads no clock
