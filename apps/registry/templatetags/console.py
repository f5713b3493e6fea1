"""Small presentation helpers for the console: badges that carry colour *and* text, JSON
pretty-printing, and query strings that keep the current filters."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.http import QueryDict
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

from apps.registry.constants import (
    AgentStatus,
    Environment,
    MemoryAccess,
    MemoryClass,
    RiskClass,
)
from apps.registry.selectors import risk_from_rank

register = template.Library()

_LABELS: dict[str, dict[str, str]] = {
    "status": dict(AgentStatus.choices),
    "risk": dict(RiskClass.choices),
    "env": {value: value for value in Environment.values},
    "memory": {value: label.split(" (")[0] for value, label in MemoryClass.choices},
    "access": dict(MemoryAccess.choices),
}


@register.simple_tag
def badge(kind: str, value: Any, label: str = "") -> str:
    """``{% badge "risk" tool.risk_class %}``: a coloured pill that always spells the value."""
    if value in (None, ""):
        return format_html('<span class="badge badge--none">{}</span>', label or "none")
    text = label or _LABELS.get(kind, {}).get(str(value), str(value))
    return format_html(
        '<span class="badge badge--{}-{}">{}</span>', kind, str(value).replace("_", "-"), text
    )


@register.filter
def rank_risk(rank: int | None) -> str | None:
    """The risk class of an annotated ``max_risk_rank``."""
    return risk_from_rank(rank)


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def compact_json(value: Any) -> str:
    if not value:
        return ""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


@register.filter
def csv(value: Any) -> str:
    """A list as the comma-separated text the forms accept."""
    return ", ".join(str(v) for v in value or [])


@register.simple_tag(takes_context=True)
def query(context: dict[str, Any], **changes: Any) -> str:
    """The current query string with some keys replaced (``None``/"" drops a key)."""
    request = context.get("request")
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    for key, value in changes.items():
        if value in (None, ""):
            params.pop(key, None)
        else:
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def sorted_join(values: Any, sep: str = ", ") -> str:
    """A set (e.g. the user's roles) as stable, sorted text."""
    return sep.join(sorted(str(v) for v in values or []))


@register.filter
def breakable(value: Any) -> str:
    """Dotted or snake_case identifiers that may wrap after a dot or underscore (escaped first,
    so only our own <wbr> tags are marked safe)."""
    text = str(escape(value))
    return mark_safe(text.replace(".", ".<wbr>").replace("_", "_<wbr>"))
