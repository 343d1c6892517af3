"""The advisor's metrics (docs/metrics.md, "Advisor"): requests, latency, suggestions, tokens.

In the controller's registry when the controller serves them, else in one of their own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REQUEST_RESULTS = ("ok", "timeout", "rate_limited", "refused", "truncated", "malformed", "auth", "unreachable", "error")
SUGGESTION_RESULTS = ("made", "valid", "rejected")


class AdvisorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.requests = Counter("pvebalance_advisor_requests", "Questions to the AI provider, by result", ["provider", "result"], registry=r)
        self.latency = Histogram(
            "pvebalance_advisor_request_duration_seconds", "Time to the provider's answer (retries included)",
            ["provider"], buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300), registry=r,
        )
        self.suggestions = Counter("pvebalance_advisor_suggestions", "Suggested moves, by what the checker made of them", ["result"], registry=r)
        self.rejections = Counter("pvebalance_advisor_rejections", "Rejected suggestions, by reason", ["reason"], registry=r)
        self.tokens = Counter("pvebalance_advisor_tokens", "Tokens the provider counted", ["provider", "direction"], registry=r)
        for result in SUGGESTION_RESULTS:
            self.suggestions.labels(result)
