"""How far a gated step reaches: records, people, money, systems, data, and what it sets off.

Computed once, when the step asks, from the tool's contract (``Tool.blast_radius`` says where
in the arguments the reach is written, as JSON pointers) and the arguments themselves, then
stored on the request: the approver must see what was true when the agent asked, even if the
tool's contract changes while the request waits. Every number says where it came from, so a
person can tell a count read from the arguments from one that was assumed.

Nothing here trusts the arguments' shape: a pointer that leads nowhere, a list where a number
was expected or an argument nested a thousand deep gives a smaller answer, never an error.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final

from .diffs import render_preview

if TYPE_CHECKING:
    from apps.registry.models import Tool

PEOPLE_SHOWN_MAX = 50
DEFAULT_CURRENCY = "USD"
# The walk for email addresses: deep and wide enough for real arguments, bounded for hostile
# ones (the arguments are whatever the agent sent).
_WALK_DEPTH_MAX = 20
_WALK_NODES_MAX = 10_000
_PERSON_MAX = 200  # characters of one name or address kept
_AMOUNT_TEXT_MAX = 60  # a longer string is not an amount anyone typed
# Linear on any input: every part has a bounded length, and the local part must start where
# no address character precedes it, so a long run without "@" is not rescanned from each
# position.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@"
    r"(?:[A-Za-z0-9-]{1,63}\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


class _Missing:
    """What a pointer resolves to when the path is not there (``None`` is a JSON value)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at an RFC 6901 JSON pointer (``/items/0/id``, ``~1`` for ``/``, ``~0`` for
    ``~``), or :data:`MISSING`. Never raises: a pointer into the arguments is the tool
    owner's guess at their shape, and the agent decides the shape."""
    if pointer == "":
        return document
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return MISSING
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, dict):
            if token not in current:
                return MISSING
            current = current[token]
        elif isinstance(current, list):
            # RFC 6901: digits without leading zeros; "-" (past the end) names nothing here.
            if not (token.isascii() and token.isdigit()) or (len(token) > 1 and token[0] == "0"):
                return MISSING
            index = int(token)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def blast_radius(
    *,
    tool: Tool,
    arguments: dict[str, Any],
    environment: str,
    preview: dict[str, Any] | None,
    granted_tools: set[str],
) -> dict[str, Any]:
    """The reach of one call of ``tool`` with ``arguments``, as the JSON stored on its request.

    ``granted_tools`` are the slugs the agent holds grants for: a downstream tool it is not
    granted still runs when this one sets it off, and the approver should know.
    """
    pointers: dict[str, Any] = tool.blast_radius if isinstance(tool.blast_radius, dict) else {}
    records, records_source = _records(pointers.get("records"), arguments, preview)
    people = _people(pointers.get("people"), arguments)
    money = _money(pointers.get("money"), pointers.get("currency"), arguments)
    systems = [str(s) for s in tool.systems] if tool.systems else [tool.name]
    data_classes = [
        {"slug": dc.slug, "name": dc.name, "sensitivity": dc.sensitivity}
        for dc in sorted(tool.data_classes.all(), key=lambda dc: (-dc.sensitivity, dc.name))
    ]
    downstream = [
        {"slug": slug, "granted": slug in granted_tools} for slug in tool.downstream_tools or []
    ]
    result: dict[str, Any] = {
        "records": records,
        "records_source": records_source,
        "people": people[:PEOPLE_SHOWN_MAX],
        "people_count": len(people),
        "money": money,
        "systems": systems,
        "data_classes": data_classes,
        "environment": environment,
        "reversible": bool(tool.reversible),
        "downstream": downstream,
    }
    result["summary"] = _summary(result)
    return result


def _records(pointer: Any, arguments: dict[str, Any], preview: Any) -> tuple[int, str]:
    """How many records, and where that number came from (``arguments /ids``, ``preview``,
    ``assumed``). A call reaches at least one thing, so the fallback is 1, not 0."""
    if isinstance(pointer, str):
        value = resolve_pointer(arguments, pointer)
        if value is not MISSING:
            source = f"arguments {pointer}"
            if isinstance(value, list):
                return len(value), source
            if isinstance(value, int) and not isinstance(value, bool):
                return abs(value), source  # a negative count is a mistake; overstate
            if isinstance(value, float) and value.is_integer():
                return abs(int(value)), source
            return 1, source
    view = render_preview(preview) if isinstance(preview, dict) else None
    if view is not None and not view.error:
        if view.format == "table":
            return view.added + view.removed + view.changed, "preview"
        if view.format == "json" and view.has_changes:
            return 1, "preview"
    return 1, "assumed"


def _people(pointer: Any, arguments: dict[str, Any]) -> list[str]:
    """Who the call reaches: the people at the pointer (text, or objects with an email or a
    name), then every address written anywhere in the arguments; each once, case aside."""
    found: list[str] = []
    if isinstance(pointer, str):
        value = resolve_pointer(arguments, pointer)
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            person = _person(entry)
            if person:
                found.append(person)
    found.extend(_emails(arguments))
    distinct: dict[str, str] = {}
    for person in found:
        distinct.setdefault(person.casefold(), person)
    return list(distinct.values())


def _person(entry: Any) -> str:
    if isinstance(entry, dict):
        for field in ("email", "name"):
            if isinstance(entry.get(field), str) and entry[field].strip():
                return entry[field].strip()[:_PERSON_MAX]
        return ""
    if isinstance(entry, str):
        return entry.strip()[:_PERSON_MAX]
    return ""


def _emails(arguments: Any) -> list[str]:
    """Addresses in the arguments' strings and keys, walked without recursion and within
    bounds: past them the rest is not read (the person still sees the arguments)."""
    found: list[str] = []
    stack: list[tuple[Any, int]] = [(arguments, 0)]
    nodes = 0
    while stack and nodes < _WALK_NODES_MAX:
        value, depth = stack.pop()
        nodes += 1
        if isinstance(value, str):
            if "@" in value:
                found.extend(m[:_PERSON_MAX] for m in _EMAIL.findall(value))
        elif depth < _WALK_DEPTH_MAX and isinstance(value, dict):
            # Reversed so that the stack pops them in their own order.
            for key, child in reversed(list(value.items())):
                stack.append((child, depth + 1))
                stack.append((key, depth + 1))
        elif depth < _WALK_DEPTH_MAX and isinstance(value, list):
            stack.extend((child, depth + 1) for child in reversed(value))
    return found


def _money(pointer: Any, currency: Any, arguments: dict[str, Any]) -> dict[str, str] | None:
    """The amount at the pointer with its currency, as text (JSON has no decimals, and a
    float would print 0.1 + 0.2 wrong); None when there is no amount to read."""
    if not isinstance(pointer, str):
        return None
    amount = _amount(resolve_pointer(arguments, pointer))
    if amount is None:
        return None
    code = DEFAULT_CURRENCY
    if isinstance(currency, str) and currency.startswith("/"):
        value = resolve_pointer(arguments, currency)
        if isinstance(value, str) and _CURRENCY.match(value.strip()):
            code = value.strip().upper()
    elif isinstance(currency, str) and _CURRENCY.match(currency):
        code = currency.upper()
    return {"amount": str(amount), "currency": code, "display": f"{_amount_text(amount)} {code}"}


def _amount(value: Any) -> Decimal | None:
    """A number, or a decimal string such as ``"-12.50"``, as its size: a refund of -50 moves
    50. Booleans, NaN and infinities are not amounts."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(abs(value))
    if isinstance(value, float):
        number = Decimal(repr(value))  # the digits the agent sent, not the binary fraction
    elif isinstance(value, str) and 0 < len(value) <= _AMOUNT_TEXT_MAX:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    if not number.is_finite():
        return None
    return abs(number)


def _amount_text(amount: Decimal) -> str:
    """``1,250.00``: grouped, with cents, unless the amount has finer digits (kept) or is too
    large to print out in full (scientific notation, not a page of zeros)."""
    if amount.adjusted() >= 18:
        return f"{amount:.3E}"
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        return f"{amount:,f}"
    return f"{amount:,.2f}"


def _summary(blast: dict[str, Any]) -> str:
    """One line: ``3 records · 2 people · 1,250.00 EUR · Stripe, Ledger · PII · prod ·
    irreversible``. Parts with nothing to say are left out; the rest always appear."""
    records = blast["records"]
    parts = [f"{records:,} record{'' if records == 1 else 's'}"]
    if blast["people_count"]:
        count = blast["people_count"]
        parts.append(f"{count:,} {'person' if count == 1 else 'people'}")
    if blast["money"]:
        parts.append(blast["money"]["display"])
    parts.append(", ".join(blast["systems"]))
    if blast["data_classes"]:
        parts.append(", ".join(dc["name"] for dc in blast["data_classes"]))
    parts.append(blast["environment"])
    parts.append("reversible" if blast["reversible"] else "irreversible")
    if blast["downstream"]:
        count = len(blast["downstream"])
        parts.append(f"sets off {count} tool{'' if count == 1 else 's'}")
    return " · ".join(parts)
