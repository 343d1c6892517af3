"""One scrape of one cluster: which API calls it makes and what came back.

Collectors name the calls they need (`Call`) from the inventory; `scrape()` makes the one
/cluster/resources call, then all the others in parallel on the target's bounded pool, and
stops waiting at the deadline. Collectors then turn the `ScrapeResult` into metric families
without any I/O of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pveapi.errors import ApiError
from pveapi.inventory import Inventory, parse_resources

if TYPE_CHECKING:
    from .target import Target

CallKey = tuple[str, str]  # (concern, subject), e.g. ("node_status", "pve1")
# The concern whose failures count as a node error (pve_up 0, node_errors_total).
NODE_STATUS = "node_status"


def _as_is(answer: Any) -> Any:
    return answer


@dataclass(frozen=True)
class Call:
    concern: str
    subject: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    # Turns the answer into what the collector reads; KeyError/TypeError/ValueError from it
    # count as a bad answer from that endpoint.
    parse: Callable[[Any], Any] = _as_is
    # Seconds an answer may be reused by later scrapes (slow-changing facts such as the
    # cluster's name); 0 = ask every scrape.
    max_age: float = 0.0
    # When set, the seconds this answer may be reused instead of `max_age` (an empty answer
    # that is rarely filled may wait longer than a filled one that changes).
    max_age_of: Callable[[Any], float] | None = None

    @property
    def key(self) -> CallKey:
        return (self.concern, self.subject)

    def reuse_for(self, answer: Any) -> float:
        """Seconds `answer` may stand for later scrapes."""
        return self.max_age_of(answer) if self.max_age_of is not None else self.max_age


RESOURCES = Call("resources", "", "/cluster/resources", parse=parse_resources)


class Concern(Protocol):
    """What `scrape()` asks of a collector class: the calls it needs once the inventory is known."""

    @staticmethod
    def calls(inventory: Inventory) -> Iterable[Call]: ...

    @staticmethod
    def follow_up(inventory: Inventory, answers: Mapping[CallKey, Any]) -> Iterable[Call]: ...


@dataclass(frozen=True)
class ScrapeResult:
    cluster: str  # the target host: the `cluster` label of self-metrics, known even when down
    inventory: Inventory | None  # None when /cluster/resources failed
    answers: Mapping[CallKey, Any] = field(default_factory=dict)
    failures: Mapping[CallKey, ApiError] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def error(self) -> ApiError | None:
        """Why /cluster/resources failed, if it did."""
        return self.failures.get(RESOURCES.key)

    @property
    def success(self) -> bool:
        return self.inventory is not None

    def answer(self, concern: str, subject: str = "") -> Any:
        return self.answers.get((concern, subject))

    def failed(self, concern: str, subject: str = "") -> bool:
        return (concern, subject) in self.failures


def _follow_ups(concerns: Sequence[type[Concern]], inventory: Inventory, answers: Mapping[CallKey, Any],
                asked: set[CallKey]) -> list[Call]:
    return [call for concern in concerns for call in concern.follow_up(inventory, answers) if call.key not in asked]


def scrape(
    target: Target,
    concerns: Sequence[type[Concern]],
    timeout: float,
    while_waiting: Callable[[Inventory], None] | None = None,
) -> ScrapeResult:
    """Fetch everything `concerns` need from `target` within `timeout` seconds.

    `while_waiting` runs once the inventory is known and the other calls are under way (the
    HTTP server renders the /cluster/resources families meanwhile). Never raises for API
    trouble: a failed /cluster/resources gives a result without inventory, any other failed
    call is listed in `failures` and its subject is simply missing.
    """
    started = time.monotonic()
    deadline = started + timeout
    answers, failures = target.finish_calls(target.start_calls([RESOURCES]), deadline)
    inventory: Inventory | None = answers.get(RESOURCES.key)
    if inventory is not None:
        pending = target.start_calls([call for concern in concerns for call in concern.calls(inventory)])
        # Calls that depend on another answer: started now when it came from the cache, else
        # once it is in.
        early = target.start_calls(_follow_ups(concerns, inventory, pending.answers, set()))
        if while_waiting is not None:
            while_waiting(inventory)
        for batch in (pending, early):
            more_answers, more_failures = target.finish_calls(batch, deadline)
            answers.update(more_answers)
            failures.update(more_failures)
        asked = {call.key for call in early.futures.values()} | set(early.answers)
        late = _follow_ups(concerns, inventory, answers, asked)
        if late:
            more_answers, more_failures = target.finish_calls(target.start_calls(late), deadline)
            answers.update(more_answers)
            failures.update(more_failures)
    result = ScrapeResult(
        cluster=target.host,
        inventory=inventory,
        answers=answers,
        failures=failures,
        duration=time.monotonic() - started,
    )
    target.record(result)
    return result
