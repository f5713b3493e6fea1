"""A window of runs summarised as the detectors need it, and the comparison of two windows
(a baseline's and a current one) metric by metric (docs/drift.md#metrics)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .constants import CUSTOM_PREFIX, Metric
from .detectors import Finding, Thresholds, continuous, distribution, proportion

# The RunSample columns a window reads, in this order.
SAMPLE_COLUMNS = (
    "failed", "outcome", "latency_ms", "tokens", "cost_usd", "tool_calls", "decisions",
    "denials", "asks", "approvals", "rejections", "metrics",
)  # fmt: skip
NO_OUTCOME = "(none)"
CONTINUOUS = {Metric.TOKENS: "tokens", Metric.COST: "cost", Metric.LATENCY: "latency"}


@dataclass
class Summary:
    """Counts and values of a window of runs."""

    runs: int = 0
    failures: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    tools: Counter[str] = field(default_factory=Counter)
    decisions: int = 0
    denials: int = 0
    asks: int = 0
    approvals: int = 0
    rejections: int = 0
    values: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[tuple[Any, ...]]) -> Summary:
        """Summarise sample rows (``SAMPLE_COLUMNS``)."""
        s = cls()
        values: dict[str, list[float]] = {"tokens": [], "cost": [], "latency": []}
        for (
            failed,
            outcome,
            latency,
            tokens,
            cost,
            tools,
            dec,
            den,
            asks,
            appr,
            rej,
            metrics,
        ) in rows:
            s.runs += 1
            s.failures += failed
            s.outcomes[outcome or NO_OUTCOME] += 1
            s.tools.update(tools)
            s.decisions += dec
            s.denials += den
            s.asks += asks
            s.approvals += appr
            s.rejections += rej
            values["tokens"].append(tokens)
            values["cost"].append(cost)
            values["latency"].append(latency)
            for name, value in metrics.items():
                values.setdefault(CUSTOM_PREFIX + name, []).append(value)
        s.values = values
        return s

    def to_json(self, *, sample_max: int) -> dict[str, Any]:
        """What a baseline keeps: every count, and at most ``sample_max`` values a metric (a
        seeded random subsample, so setting a baseline twice keeps the same values)."""
        rng = np.random.default_rng(0)
        kept = {}
        for name, values in self.values.items():
            if len(values) > sample_max:
                values = [values[i] for i in sorted(rng.choice(len(values), sample_max, False))]
            kept[name] = [round(float(v), 6) for v in values]
        return {
            "runs": self.runs, "failures": self.failures, "outcomes": dict(self.outcomes),
            "tools": dict(self.tools), "decisions": self.decisions, "denials": self.denials,
            "asks": self.asks, "approvals": self.approvals, "rejections": self.rejections,
            "values": kept,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(
            runs=data.get("runs", 0), failures=data.get("failures", 0),
            outcomes=Counter(data.get("outcomes", {})), tools=Counter(data.get("tools", {})),
            decisions=data.get("decisions", 0), denials=data.get("denials", 0),
            asks=data.get("asks", 0), approvals=data.get("approvals", 0),
            rejections=data.get("rejections", 0), values=dict(data.get("values", {})),
        )  # fmt: skip

    def rate(self, metric: str) -> tuple[int, int]:
        """A rate metric's (hits, out of)."""
        rates: dict[str, tuple[int, int]] = {
            Metric.ERROR_RATE: (self.failures, self.runs),
            Metric.DENIAL_RATE: (self.denials, self.decisions),
            Metric.ASK_RATE: (self.asks, self.decisions),
            Metric.REJECTION_RATE: (self.rejections, self.approvals),
        }
        return rates[metric]


RATES = (Metric.ERROR_RATE, Metric.DENIAL_RATE, Metric.ASK_RATE, Metric.REJECTION_RATE)


def compare(baseline: Summary, current: Summary, t: Thresholds) -> list[tuple[str, str, Finding]]:
    """Every metric that drifted: (metric, key, finding); ``key`` names a custom metric."""
    found: list[tuple[str, str, Finding]] = []

    def add(metric: str, key: str, finding: Finding | None) -> None:
        if finding is not None:
            found.append((metric, key, finding))

    runs = {"baseline_runs": baseline.runs, "current_runs": current.runs}
    add(Metric.OUTCOME, "", distribution(baseline.outcomes, current.outcomes, **runs, t=t))
    add(Metric.TOOL_MIX, "", distribution(baseline.tools, current.tools, **runs, t=t))
    for metric in RATES:
        add(metric, "", proportion(*baseline.rate(metric), *current.rate(metric), t=t))
    for metric, name in CONTINUOUS.items():
        add(metric, "", continuous(baseline.values.get(name, []), current.values[name], t=t))
    for name, values in current.values.items():
        if name.startswith(CUSTOM_PREFIX):
            key = name[len(CUSTOM_PREFIX) :]
            add(Metric.CUSTOM, key, continuous(baseline.values.get(name, []), values, t=t))
    return found


def indicator(metric: str, key: str, subject: str, row: tuple[Any, ...]) -> float | None:
    """One run's value of a metric, for locating where a drift began: a rate's hit fraction,
    a distribution's share of ``subject``, a continuous value (None: the run has none)."""
    failed, outcome, latency, tokens, cost, tools, dec, den, asks, appr, rej, metrics = row
    if metric == Metric.OUTCOME:
        return float((outcome or NO_OUTCOME) == subject)
    if metric == Metric.TOOL_MIX:
        calls = sum(tools.values())
        return tools.get(subject, 0) / calls if calls else None
    if metric == Metric.ERROR_RATE:
        return float(failed)
    if metric in (Metric.DENIAL_RATE, Metric.ASK_RATE):
        return ((den if metric == Metric.DENIAL_RATE else asks) / dec) if dec else None
    if metric == Metric.REJECTION_RATE:
        return rej / appr if appr else None
    if metric == Metric.CUSTOM:
        return metrics.get(key)
    values: dict[str, float] = {Metric.TOKENS: tokens, Metric.COST: cost, Metric.LATENCY: latency}
    return float(values[metric])
