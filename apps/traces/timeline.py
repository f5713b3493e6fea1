"""One run's trace fabric as ordered steps, laid out as a waterfall.

The selectors fetch the rows (spans of all the run's traces, its decisions, the audit events
about it); this module merges them in time order and places them: spans nested by
``parent_span_id``, each decision nested under the innermost span open when it was made, and
every step positioned by its start and duration relative to the timeline's origin. The replay
walks the same steps in the same order, framed by three steps of its own: the request, the
agent's identity and version, and the outcome (cost, latency and the error path).

The page's script (static/js/traces.js) repeats the nesting and the placement when live rows
arrive, from the same data attributes, so the two must follow the same rules.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from apps.runtime.constants import Disposition, RunState

from .constants import SpanKind, SpanStatus

# What each step is in the replay's story.
SPAN_PHASES = {
    SpanKind.AGENT: "Agent",
    SpanKind.WORKFLOW: "Workflow",
    SpanKind.LLM: "Model call",
    SpanKind.TOOL: "Tool call",
    SpanKind.RETRIEVAL: "Retrieved context",
    SpanKind.MEMORY: "Memory",
    SpanKind.GUARDRAIL: "Guardrail",
    SpanKind.OTHER: "Step",
}
# Steps starting at the same instant: the request first, then who is acting, then what
# happened (a parent span before its children), the outcome last.
TYPE_ORDER = {"request": 0, "identity": 1, "audit": 2, "span": 3, "decision": 4, "outcome": 9}
FRAME_RANK = {"request": -2, "identity": -1, "outcome": 1}
FAILED_STATES = frozenset({RunState.FAILED, RunState.KILLED, RunState.EXPIRED})
# A bar is never narrower than this (per cent of the waterfall), so a 1 µs span can be seen.
MIN_BAR_PCT = 0.4


@dataclass
class RunTotals:
    """What a run's Trace rollups add up to, and its decisions' counts."""

    spans: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal | None = None
    decisions: int = 0
    denials: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Step:
    """One row of the timeline: a span, a decision, an audit event, or a replay frame."""

    id: str
    type: str  # request, identity, span, decision, audit, outcome
    kind: str  # the span kind, the decision's disposition, or the type again
    phase: str
    label: str
    start: datetime
    end: datetime | None = None
    detail: str = ""
    error: bool = False
    obj: Any = None
    span_key: str = ""  # "<trace id>:<span id>" for spans
    parent_key: str = ""  # the parent span's key (spans), or the enclosing span's (decisions)
    depth: int = 0
    number: int = 0
    offset_pct: float = 0.0
    width_pct: float = 0.0
    # The outcome step's details: the run's totals and its error path.
    totals: RunTotals | None = None
    error_path: list[Step] = field(default_factory=list)

    @property
    def is_marker(self) -> bool:
        return self.end is None

    @property
    def duration_ms(self) -> float | None:
        if self.end is None:
            return None
        return (self.end - self.start).total_seconds() * 1000

    @property
    def start_ms(self) -> int:
        """Unix milliseconds (with microseconds as a fraction), for the page's script."""
        return int(self.start.timestamp() * 1000)

    @property
    def start_us(self) -> int:
        return int(self.start.timestamp() * 1_000_000)

    @property
    def end_us(self) -> int | None:
        return int(self.end.timestamp() * 1_000_000) if self.end is not None else None


@dataclass
class Timeline:
    steps: list[Step]
    origin: datetime
    end: datetime
    spans_total: int = 0
    spans_shown: int = 0
    errors: list[Step] = field(default_factory=list)
    totals: RunTotals | None = None

    @property
    def truncated(self) -> bool:
        return self.spans_shown < self.spans_total

    @property
    def duration_ms(self) -> float:
        return (self.end - self.origin).total_seconds() * 1000

    def axis(self, ticks: int = 4) -> list[tuple[float, float]]:
        """(per cent, milliseconds from the origin) for the waterfall's time axis."""
        return [(100 * i / ticks, self.duration_ms * i / ticks) for i in range(ticks + 1)]


# --- steps from rows -------------------------------------------------------------------------


def span_key(trace_id: str, span_id: str) -> str:
    return f"{trace_id}:{span_id}" if span_id else ""


def span_step(span: Any) -> Step:
    kind = span.kind if span.kind in SPAN_PHASES else SpanKind.OTHER
    bits: list[str] = []
    if span.tool_name:
        bits.append(span.tool_name)
    if span.model:
        bits.append(span.model)
    tokens = (span.input_tokens or 0) + (span.output_tokens or 0)
    if tokens:
        bits.append(f"{tokens:,} tokens")
    if span.status == SpanStatus.ERROR:
        bits.append(span.status_message or "error")
    return Step(
        id=f"span-{span.pk}",
        type="span",
        kind=kind,
        phase=SPAN_PHASES[kind],
        label=span.name,
        start=span.start_time,
        end=max(span.end_time, span.start_time),
        detail=" · ".join(bits),
        error=span.status == SpanStatus.ERROR,
        obj=span,
        span_key=span_key(span.trace_id, span.span_id),
        parent_key=span_key(span.trace_id, span.parent_span_id),
    )


def decision_step(decision: Any) -> Step:
    disposition = decision.disposition
    phase = "Approval" if disposition == Disposition.ASK else "Policy decision"
    target = (
        f"{decision.target} ({decision.tool_action})" if decision.tool_action else decision.target
    )
    return Step(
        id=f"decision-{decision.pk}",
        type="decision",
        kind=disposition,
        phase=phase,
        label=f"{decision.get_disposition_display()}: {decision.get_action_display()} {target}",
        start=decision.created_at,
        detail=", ".join(str(r) for r in decision.reasons or []),
        error=disposition == Disposition.DENY,
        obj=decision,
    )


def audit_step(event: Any) -> Step:
    return Step(
        id=f"audit-{event.pk}",
        type="audit",
        kind="audit",
        phase="Run event",
        label=event.action,
        start=event.occurred_at,
        detail=event.actor_name + (f" · {event.message}" if event.message else ""),
        obj=event,
    )


def request_step(run: Any) -> Step:
    behalf = f"on behalf of {run.on_behalf_of.get_username()}" if run.on_behalf_of else ""
    return Step(
        id="request",
        type="request",
        kind="request",
        phase="Request",
        label=run.task,
        start=run.started_at,
        detail=" · ".join(b for b in (run.intent, behalf) if b),
        obj=run,
    )


def identity_step(run: Any) -> Step:
    return Step(
        id="identity",
        type="identity",
        kind="identity",
        phase="Agent identity",
        label=f"{run.agent.name} v{run.version.number} in {run.environment}",
        start=run.started_at,
        detail=run.agent.slug,
        obj=run,
    )


def outcome_step(run: Any, totals: RunTotals, *, last: datetime) -> Step:
    """The last step: how the run ended (or that it is still running), what it cost, and how
    much went wrong (errored spans and denials: the error path). It is marked as an error when
    the run failed, was killed or expired; a run that finished despite errors is not."""
    errors = totals.errors + totals.denials
    bits = [run.get_state_display()]
    if totals.tokens:
        bits.append(f"{totals.tokens:,} tokens")
    if totals.cost_usd is not None:
        bits.append(f"${totals.cost_usd:.4f}")
    if errors:
        bits.append(f"{errors} on the error path")
    ended = run.ended_at or last
    return Step(
        id="outcome",
        type="outcome",
        kind="outcome",
        phase="Cost and latency" if run.state == RunState.RUNNING else "Outcome",
        label=run.outcome or (run.get_state_display() if run.ended_at else "Still running"),
        start=max(ended, run.started_at),
        detail=" · ".join(bits),
        error=run.state in FAILED_STATES,
        obj=run,
        totals=totals,
    )


# --- nesting and placement -------------------------------------------------------------------


def nest(steps: list[Step]) -> None:
    """Depth of each span from its parent chain (a parent not stored yet, or a cycle, makes a
    root); each decision under the latest-started span still open when it was made."""
    spans = {s.span_key: s for s in steps if s.type == "span" and s.span_key}
    depths: dict[str, int] = {}
    for step in spans.values():
        chain: list[str] = []
        on_chain: set[str] = set()
        key = step.span_key
        while key in spans and key not in depths and key not in on_chain:
            chain.append(key)
            on_chain.add(key)
            key = spans[key].parent_key
        depth = depths.get(key, -1)
        for link in reversed(chain):
            depth += 1
            depths[link] = depth
    for key, depth in depths.items():
        spans[key].depth = depth

    # A sweep in time order: the heap's top is the open span that started last (the deepest
    # of those that started together); spans that ended are dropped as they reach the top.
    ordered = sorted(spans.values(), key=lambda s: (s.start, s.depth))
    open_spans: list[tuple[float, int, int]] = []  # (-start, -depth, index)
    markers = sorted((s for s in steps if s.type == "decision"), key=lambda s: s.start)
    i = 0
    for marker in markers:
        while i < len(ordered) and ordered[i].start <= marker.start:
            span = ordered[i]
            heapq.heappush(open_spans, (_neg(span.start), -span.depth, i))
            i += 1
        while open_spans and (ordered[open_spans[0][2]].end or marker.start) < marker.start:
            heapq.heappop(open_spans)
        if open_spans:
            parent = ordered[open_spans[0][2]]
            marker.parent_key, marker.depth = parent.span_key, parent.depth + 1
        else:
            marker.parent_key, marker.depth = "", 0


def _neg(moment: datetime) -> float:
    """A sort key that orders later moments first in a min-heap."""
    return -moment.timestamp()


def order(steps: list[Step]) -> list[Step]:
    """Time order, framed: the request and the agent's identity open the story and the
    outcome closes it, whatever the clocks of the spans say (an agent's clock may run a little
    ahead of or behind Tether's)."""
    ranked = sorted(
        enumerate(steps),
        key=lambda p: (FRAME_RANK.get(p[1].type, 0), p[1].start, TYPE_ORDER[p[1].type],
                       p[1].depth, p[0]),
    )  # fmt: skip
    ordered = [s for _, s in ranked]
    for number, step in enumerate(ordered, start=1):
        step.number = number
    return ordered


def place(steps: list[Step], origin: datetime, end: datetime) -> None:
    total = max((end - origin).total_seconds(), 1e-6)
    for step in steps:
        offset = (step.start - origin).total_seconds() / total * 100
        step.offset_pct = round(min(max(offset, 0.0), 100.0), 3)
        if step.end is not None:
            width = (step.end - step.start).total_seconds() / total * 100
            step.width_pct = round(min(max(width, MIN_BAR_PCT), 100.0 - step.offset_pct), 3)


def build(
    *,
    spans: Sequence[Any],
    decisions: Sequence[Any] = (),
    events: Sequence[Any] = (),
    run: Any = None,
    totals: RunTotals | None = None,
    spans_total: int | None = None,
    now: datetime,
) -> Timeline:
    """The ordered, nested, placed steps of a run (``run`` given) or of one trace."""
    steps = [span_step(s) for s in spans]
    steps += [decision_step(d) for d in decisions]
    steps += [audit_step(e) for e in events]
    errors = [s for s in steps if s.error]
    times = [s.start for s in steps] + [s.end for s in steps if s.end is not None]
    if run is not None:
        times.append(run.started_at)
        last = max(times)
        if run.state == RunState.RUNNING:
            last = max(last, now)
        if totals is None:
            totals = RunTotals(
                errors=sum(1 for e in errors if e.type == "span"),
                denials=sum(1 for e in errors if e.type == "decision"),
            )
        steps += [request_step(run), identity_step(run), outcome_step(run, totals, last=last)]
        times.append(last)
    if not times:
        times = [now]
    origin, end = min(times), max(times)
    if end <= origin:
        end = origin + timedelta(milliseconds=1)
    nest(steps)
    steps = order(steps)
    place(steps, origin, end)
    shown = len(spans)
    return Timeline(
        steps=steps,
        origin=origin,
        end=end,
        spans_total=max(spans_total if spans_total is not None else shown, shown),
        spans_shown=shown,
        errors=[s for s in steps if s.error and s.type != "outcome"],
        totals=totals,
    )
