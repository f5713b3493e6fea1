"""Which risk class a step has, and what that class does: read on every gated decision.

The decision service asks :func:`step_gate` on each tool call, so nothing here queries per
request: the whole table of gates and action risks (a few rows per tool at most) is read once
per process and kept until a gate or mapping write bumps ``GATES_GENERATION`` (seen at once
in the writing process, within ``GATES_CACHE_SECONDS`` elsewhere).

Resolution, most specific first:

- risk class: the agent's mapping of (tool, action), the agent's mapping of the tool, the
  organisation's mapping of (tool, action), of the tool, then the tool's own class;
- gate: the agent's row for that class, the organisation's, then ``DEFAULT_GATES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.common import generation

from .constants import (
    DEFAULT_ESCALATE_AFTER_SECONDS,
    DEFAULT_EXPIRES_AFTER_SECONDS,
    DEFAULT_GATES,
    GATES_CACHE_SECONDS,
    GATES_GENERATION,
    ExpiryOutcome,
)


@dataclass(frozen=True, slots=True)
class Gate:
    risk_class: str
    outcome: str
    approvals_required: int
    expires_after_seconds: int
    on_expiry: str
    escalate_after_seconds: int | None
    overridden_for_agent: bool = False


@dataclass(frozen=True, slots=True)
class _Table:
    risks: dict[tuple[int | None, int, str], str]  # (agent pk or None, tool pk, action) -> class
    gates: dict[tuple[int | None, str], Gate]  # (agent pk or None, class) -> gate


def _build() -> _Table:
    from .models import ActionRisk, RiskGate

    risks = {
        (row.agent_id, row.tool_id, row.action): row.risk_class for row in ActionRisk.objects.all()
    }
    gates = {
        (row.agent_id, row.risk_class): Gate(
            risk_class=row.risk_class,
            outcome=row.outcome,
            approvals_required=row.approvals_required,
            expires_after_seconds=row.expires_after_seconds,
            on_expiry=row.on_expiry,
            escalate_after_seconds=row.escalate_after_seconds,
            overridden_for_agent=row.agent_id is not None,
        )
        for row in RiskGate.objects.all()
    }
    return _Table(risks=risks, gates=gates)


_tables = generation.CachedTable(GATES_GENERATION, _build, refresh=1.0, max_age=GATES_CACHE_SECONDS)


def bump_gates() -> None:
    generation.bump_on_commit(GATES_GENERATION)


def forget_gates() -> None:
    _tables.forget()


def _current() -> _Table:
    return _tables.get()


def _risk_in(table: _Table, agent_id: int, tool_id: int, tool_risk: str, action: str) -> str:
    risks = table.risks
    for key in (
        (agent_id, tool_id, action),
        (agent_id, tool_id, ""),
        (None, tool_id, action),
        (None, tool_id, ""),
    ):
        found = risks.get(key)
        if found is not None:
            return found
    return tool_risk


def _gate_in(table: _Table, agent_id: int, risk_class: str) -> Gate:
    gates = table.gates
    return (
        gates.get((agent_id, risk_class))
        or gates.get((None, risk_class))
        or default_gate(risk_class)
    )


def risk_class_for(*, agent_id: int, tool_id: int, tool_risk: str, action: str) -> str:
    return _risk_in(_current(), agent_id, tool_id, tool_risk, action)


def step_gate(*, agent_id: int, tool_id: int, tool_risk: str, action: str) -> tuple[str, Gate]:
    """The step's risk class and that class's gate, from one look at the cached table (the
    decision service asks this on every tool call)."""
    table = _current()
    risk = _risk_in(table, agent_id, tool_id, tool_risk, action)
    return risk, _gate_in(table, agent_id, risk)


def default_gate(risk_class: str) -> Gate:
    default = DEFAULT_GATES[risk_class]
    return Gate(
        risk_class=risk_class,
        outcome=str(default["outcome"]),
        approvals_required=int(default["approvals_required"]),  # type: ignore[call-overload]
        expires_after_seconds=DEFAULT_EXPIRES_AFTER_SECONDS,
        on_expiry=ExpiryOutcome.DENY,
        escalate_after_seconds=DEFAULT_ESCALATE_AFTER_SECONDS,
    )
