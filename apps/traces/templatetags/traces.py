"""Presentation helpers for the trace fabric's pages: durations, money, kind glyphs, and
payloads whose truncation marker is shown as such."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()

# One letter per kind, drawn in the kind's colour: legible in any font, and the row's text
# names the kind too (the glyph is decoration).
GLYPHS = {
    "agent": "A", "workflow": "W", "llm": "L", "tool": "T", "retrieval": "R", "memory": "M",
    "guardrail": "G", "other": "·", "audit": "E", "request": "Q", "identity": "I",
    "outcome": "=",
}  # fmt: skip
# apps.traces.constants.TRUNCATION_MARKER, as the mapping appends it.
_TRUNCATED = re.compile(r"…\[truncated (\d+) characters\]$")


@register.filter
def glyph(kind: str) -> str:
    return GLYPHS.get(kind, "")


@register.filter
def duration(ms: float | None) -> str:
    """850 ms, 2.4 s, 3 min 12 s, 1 h 5 min."""
    if ms is None:
        return "—"
    if ms == 0:
        return "0"
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def run_duration_ms(run: Any) -> float:
    """From the run's start to its end, or to now while it runs."""
    end: datetime = run.ended_at or timezone.now()
    return max((end - run.started_at).total_seconds() * 1000, 0.0)


@register.filter
def trace_duration_ms(trace: Any) -> float:
    return max((trace.ended_at - trace.started_at).total_seconds() * 1000, 0.0)


@register.filter
def usd(value: Decimal | float | None) -> str:
    if value is None:
        return "—"
    value = Decimal(value)
    if value and abs(value) < Decimal("0.01"):
        return f"${value:.4f}"
    return f"${value:,.2f}"


@register.filter
def short_id(value: Any) -> str:
    return str(value)[:8]


@register.simple_tag
def payload(text: str) -> str:
    """A tool's arguments or result as sent; a cut one ends in a visible truncation badge."""
    if not text:
        return format_html('<span class="empty-value">{}</span>', "not sent")
    match = _TRUNCATED.search(text)
    if match is None:
        return format_html('<pre class="json payload">{}</pre>', text)
    return format_html(
        '<pre class="json payload">{}</pre><p class="truncated" role="note">'
        '<span class="badge badge--truncated">Truncated</span> {} more characters were not kept.'
        "</p>",
        text[: match.start()],
        f"{int(match.group(1)):,}",
    )
