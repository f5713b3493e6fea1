"""Drift in plain words: "outcome 'approved' 85% → 91% since Tue 14:00, p < 0.001", and what
an audited change near the onset was ("knowledge base kb-2026-01 → kb-2026-03")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from .constants import METRIC_KINDS, Metric, MetricKind

TESTS = {
    "two_proportion_z": "two-proportion z-test",
    "chi_square": "chi-square test",
    "mann_whitney": "Mann-Whitney U test",
}
UNITS: dict[str, str] = {Metric.TOKENS: " tokens", Metric.COST: "", Metric.LATENCY: ""}
RATE_NAMES: dict[str, str] = {
    Metric.ERROR_RATE: "error rate",
    Metric.DENIAL_RATE: "denial rate",
    Metric.ASK_RATE: "ask rate",
    Metric.REJECTION_RATE: "approval rejection rate",
}


def subject_words(metric: str, key: str, subject: str) -> str:
    """What moved: ``outcome "approved"``, ``error rate``, ``median latency``."""
    if metric == Metric.OUTCOME:
        return f"outcome “{subject}”"
    if metric == Metric.TOOL_MIX:
        return f"share of calls to {subject}"
    if metric in RATE_NAMES:
        return RATE_NAMES[metric]
    what = key if metric == Metric.CUSTOM else Metric(metric).label.lower()
    return f"{subject} {what}"


def value_words(metric: str, value: float) -> str:
    kind = METRIC_KINDS.get(metric)
    if kind in (MetricKind.DISTRIBUTION, MetricKind.PROPORTION):
        percent = round(value * 100, 1)
        return f"{percent:.0f}%" if percent.is_integer() else f"{percent:.1f}%"
    if metric == Metric.COST:
        return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"
    if metric == Metric.LATENCY:
        return f"{value / 1000:,.1f} s" if value >= 1000 else f"{value:,.0f} ms"
    number = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"
    return number + UNITS.get(metric, "")


def p_words(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def moment_words(moment: datetime) -> str:
    """``Tue 14:00`` (in the console's time zone)."""
    return timezone.localtime(moment).strftime("%a %H:%M")


def headline(
    *, metric: str, key: str, subject: str, before: float, now: float, onset: datetime, p: float
) -> str:
    return (
        f"{subject_words(metric, key, subject)} {value_words(metric, before)} → "
        f"{value_words(metric, now)} since {moment_words(onset)}, {p_words(p)}"
    )


def alert_headline(alert: Any) -> str:
    """A drift alert's headline (``alert``: a DriftAlert)."""
    return headline(
        metric=alert.metric, key=alert.key, subject=alert.subject, before=alert.baseline_value,
        now=alert.current_value, onset=alert.onset_at, p=alert.p_value,
    )  # fmt: skip


# --- change events ---------------------------------------------------------------------------

WATCHED_FIELDS = {
    "knowledge_base_version": "knowledge base",
    "default_model": "model",
    "model_family": "model family",
    "instructions": "instructions",
    "parameters": "parameters",
    "autonomy_level": "autonomy level",
    "providers": "providers",
}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def snapshot_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What a new version changed, e.g. ``knowledge base kb-2026-01 → kb-2026-03``."""
    parts = []
    for field, label in WATCHED_FIELDS.items():
        if before.get(field) != after.get(field):
            if field in ("instructions", "parameters"):
                parts.append(f"{label} changed")
            else:
                parts.append(f"{label} {_short(before.get(field))} → {_short(after.get(field))}")
    if before.get("tools") != after.get("tools"):
        parts.append("tool grants changed")
    return "; ".join(parts)


def change_words(action: str, before: Any, after: Any, message: str, target: str) -> str:
    """An audited change in a few words."""
    if action.startswith("releases."):
        return message or action
    if action.startswith("policy."):
        return f"policy {target} {action.rsplit('.', 1)[-1]}"
    if action == "costs.price.set":
        return f"price of {target} changed"
    return message or action
