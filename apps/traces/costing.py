"""What a span cost, decided as it is stored, so nothing downstream prices spans again.

A model call (an LLM span with a model and tokens) costs its model's price at the span's start
(apps.common.pricing; an unknown model is charged at the worst case and marked ``unpriced``).
A tool call costs what its registered tool declares per call. Every other span costs nothing
itself: an agent or workflow span that repeats its children's token counts must not count them
twice.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from django.utils.text import slugify

from apps.common.pricing import PriceSource, model_cost

from .constants import SpanKind

NO_COST: tuple[Decimal | None, str] = (None, "")


class Costable(Protocol):
    """What pricing reads of a span: a mapped OTLP span, or a stored one (the backfill)."""

    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def input_tokens(self) -> int | None: ...
    @property
    def output_tokens(self) -> int | None: ...
    @property
    def cached_tokens(self) -> int | None: ...
    @property
    def tool_name(self) -> str: ...
    @property
    def start_time(self) -> datetime: ...


def span_cost(record: Costable, tools: dict[str, Decimal]) -> tuple[Decimal | None, str]:
    """(cost in US dollars, its source) of one span; ``tools`` is apps.registry's tool costs."""
    if record.kind == SpanKind.LLM:
        if not record.model or not (record.input_tokens or record.output_tokens):
            return NO_COST
        cost = model_cost(
            model=record.model,
            provider=record.provider,
            input_tokens=record.input_tokens or 0,
            output_tokens=record.output_tokens or 0,
            cached_tokens=record.cached_tokens or 0,
            at=record.start_time,
        )
        return cost.usd, cost.source
    if record.kind == SpanKind.TOOL and record.tool_name and tools:
        per_call = tools.get(record.tool_name) or tools.get(slugify(record.tool_name))
        if per_call:
            return per_call, PriceSource.TOOL
    return NO_COST
