"""Live views, the page side: what an open run, trace or fleet page is sent, and how nothing
is missed.

A page is rendered with a **cursor**; its websocket consumer (apps/traces/consumers.py), or
the polling fallback, hands the cursor to a feed, which reads from the database what is newer
and answers one ``update`` message (rendered rows, the summary, the next cursor). The wake-up
that spans were stored (apps/traces/live.py) only makes this happen sooner; a tick makes it
happen anyway, so a lost message delays an update and never loses it.

Why a cursor is more than "the last id sent": ids are handed out when a row is inserted, but
rows become visible when their transaction commits, and two concurrent exports (or decisions)
can commit out of order. A page that remembered only the highest id it saw would skip a row
with a smaller id that committed a moment later. So each stream (spans, decisions, run events)
keeps a **settled floor**: every id at or below it is either shown or never coming. Rows above
the floor are read again on every fetch (the consumer remembers which of them it sent; the
page ignores a row it already has). The highest id seen becomes the next floor once it has
been seen for ``LIVE_GRACE_SECONDS`` -- any smaller id's transaction began before that row
was visible, and no ingest or decision transaction lasts that long.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Max
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.runtime.constants import RunState
from apps.runtime.models import Run

from . import selectors, timeline
from .constants import LIVE_BATCH_MAX, LIVE_GRACE_SECONDS
from .models import Span, Trace
from .timeline import Step

CURSOR_VERSION = "1"
SOURCES = ("spans", "decisions", "events")


@dataclass
class Source:
    """One stream's position: ``floor`` is settled; ``candidate``, seen at ``since`` (unix
    seconds), becomes the floor once it has been visible for the grace period."""

    floor: int = 0
    candidate: int = 0
    since: float = 0.0

    def advance(self, max_seen: int, now: float) -> None:
        if self.candidate > self.floor and now - self.since >= LIVE_GRACE_SECONDS:
            self.floor = self.candidate
        if self.candidate <= self.floor and max_seen > self.floor:
            self.candidate, self.since = max_seen, now


@dataclass
class Cursor:
    spans: Source = field(default_factory=Source)
    decisions: Source = field(default_factory=Source)
    events: Source = field(default_factory=Source)

    def encode(self) -> str:
        parts = [CURSOR_VERSION]
        for name in SOURCES:
            s: Source = getattr(self, name)
            parts += [str(s.floor), str(s.candidate), str(int(s.since * 1000))]
        return ".".join(parts)

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor a page sent back; ``ValueError`` if it is not one."""
        parts = (text or "").split(".")
        if len(parts) != 1 + 3 * len(SOURCES) or parts[0] != CURSOR_VERSION:
            raise ValueError("Not a live cursor.")
        numbers = [int(p) for p in parts[1:] if p.isdigit() and len(p) <= 19]
        if len(numbers) != 3 * len(SOURCES):
            raise ValueError("Not a live cursor.")
        sources = [
            Source(numbers[i], numbers[i + 1], numbers[i + 2] / 1000)
            for i in range(0, len(numbers), 3)
        ]
        return cls(*sources)

    @classmethod
    def starting(
        cls,
        *,
        spans: Iterable[tuple[int, datetime]] = (),
        decisions: Iterable[tuple[int, datetime]] = (),
        events: Iterable[tuple[int, datetime]] = (),
        now: float | None = None,
    ) -> Cursor:
        """The cursor of a page rendered with these rows (id, when it was written). Rows
        written before the grace period are settled; the newest is the candidate."""
        now = time.time() if now is None else now
        cursor = cls()
        for name, rows in (("spans", spans), ("decisions", decisions), ("events", events)):
            source: Source = getattr(cursor, name)
            rows = list(rows)
            settled = [pk for pk, at in rows if at.timestamp() <= now - LIVE_GRACE_SECONDS]
            source.floor = max(settled, default=0)
            newest = max((pk for pk, _ in rows), default=0)
            if newest > source.floor:
                source.candidate, source.since = newest, now
        return cursor


def page_cursor(tl: timeline.Timeline, *, spans_max_id: int | None = None) -> str:
    """The cursor a run or trace page starts from. When the page left spans out, the span
    stream starts past all of them (``spans_max_id``): the page streams only new ones."""
    spans, decisions, events = [], [], []
    for step in tl.steps:
        obj = step.obj
        if step.type == "span":
            spans.append((obj.pk, obj.received_at))
        elif step.type == "decision":
            decisions.append((obj.pk, obj.created_at))
        elif step.type == "audit":
            events.append((obj.pk, obj.occurred_at))
    cursor = Cursor.starting(spans=spans, decisions=decisions, events=events)
    if spans_max_id:
        cursor.spans = Source(floor=spans_max_id, candidate=spans_max_id)
    return cursor.encode()


def spans_max_id(spans: Any) -> int:
    return int(spans.aggregate(m=Max("id"))["m"] or 0)


def _fresh(rows: Sequence[Any], seen: set[int]) -> list[Any]:
    return [r for r in rows if r.pk not in seen]


def _row(step: Step, step_base: str) -> str:
    return render_to_string(
        "traces/partials/step_row.html", {"step": step, "step_base": step_base, "live": True}
    )


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class RunFeed:
    """What is new in one run since a cursor. The consumer keeps one per socket (``seen``
    spares it re-sending rows above the floors); the polling fallback builds one per request
    from the page's cursor."""

    def __init__(self, *, run: Run, cursor: Cursor) -> None:
        self.run = run
        self.cursor = cursor
        self.seen: dict[str, set[int]] = {name: set() for name in SOURCES}
        self.span_total: int | None = None
        self.sent: dict[str, str] = {}  # summary / outcome: digest of what was last sent
        self.base = reverse("traces:run-detail", args=[run.pk]) + "steps/"

    def poll(self, *, wake: bool = False, now: float | None = None) -> dict[str, Any] | None:
        """One fetch: an ``update`` message, or None when nothing changed."""
        now = time.time() if now is None else now
        run, cur = self.run, self.cursor
        probe = selectors.run_probe(
            run_id=run.pk, decision_after=cur.decisions.floor, event_after=cur.events.floor
        )
        if probe is None:
            return {"type": "gone"}
        if (probe.state, probe.ended_at) != (run.state, run.ended_at):
            run.refresh_from_db(fields=["state", "ended_at", "outcome", "last_heartbeat_at"])
        steps: list[Step] = []
        if probe.new_decisions != len(self.seen["decisions"]):
            decisions = selectors.run_decisions(
                run=run,
                after=cur.decisions.floor,
                limit=LIVE_BATCH_MAX + len(self.seen["decisions"]),
            )
            steps += [timeline.decision_step(d) for d in self._take("decisions", decisions)]
        if probe.new_events != len(self.seen["events"]):
            events = selectors.run_events(
                run=run, after=cur.events.floor, limit=LIVE_BATCH_MAX + len(self.seen["events"])
            )
            steps += [timeline.audit_step(e) for e in self._take("events", events)]
        if wake or probe.span_total != self.span_total:
            self.span_total = probe.span_total
            spans = selectors.run_spans(
                run=run, after=cur.spans.floor, limit=LIVE_BATCH_MAX + len(self.seen["spans"])
            )
            steps += [timeline.span_step(s) for s in self._take("spans", spans)]
        message = self._message(steps, changed=bool(steps) or "summary" not in self.sent)
        self._advance(now)
        if message is not None:
            message["cursor"] = self.cursor.encode()
        return message

    def _take(self, name: str, rows: Iterable[Any]) -> list[Any]:
        fresh = _fresh(list(rows), self.seen[name])
        self.seen[name].update(r.pk for r in fresh)
        return fresh

    def _advance(self, now: float) -> None:
        for name in SOURCES:
            source: Source = getattr(self.cursor, name)
            seen = self.seen[name]
            source.advance(max(seen, default=source.floor), now)
            self.seen[name] = {pk for pk in seen if pk > source.floor}

    def _message(self, steps: list[Step], *, changed: bool) -> dict[str, Any] | None:
        run = self.run
        out: dict[str, Any] = {"type": "update", "state": run.state, "steps": []}
        if changed or self._state_moved():
            totals = selectors.run_totals([run.pk])[run.pk]
            steps = [*steps, timeline.outcome_step(run, totals, last=timezone.now())]
            summary = render_to_string(
                "traces/partials/run_summary.html", {"run": run, "totals": totals}
            )
            if self._changed("summary", summary):
                out["summary"] = summary
        for step in steps:
            html = _row(step, self.base)
            if step.type != "outcome" or self._changed("outcome", html):
                out["steps"].append({"id": step.id, "html": html})
        self.sent["state"] = f"{run.state}:{run.ended_at}"
        return out if out["steps"] or "summary" in out else None

    def _changed(self, name: str, html: str) -> bool:
        digest = _digest(html)
        if self.sent.get(name) == digest:
            return False
        self.sent[name] = digest
        return True

    def _state_moved(self) -> bool:
        return self.sent.get("state") != f"{self.run.state}:{self.run.ended_at}"


class TraceFeed:
    """What is new in one trace without a run (spans only)."""

    def __init__(self, *, trace: Trace, cursor: Cursor) -> None:
        self.trace = trace
        self.cursor = cursor
        self.seen: set[int] = set()
        self.span_count: int | None = None
        self.sent_summary = ""
        self.base = reverse("traces:trace-detail", args=[trace.trace_id]) + "steps/"

    def poll(self, *, wake: bool = False, now: float | None = None) -> dict[str, Any] | None:
        now = time.time() if now is None else now
        row = Trace.objects.filter(pk=self.trace.pk).values("span_count", "run_id").first()
        if row is None:
            return {"type": "gone"}
        if row["run_id"] is not None:
            url = reverse("traces:run-detail", args=[row["run_id"]])
            return {"type": "moved", "url": url}
        steps: list[Step] = []
        if wake or row["span_count"] != self.span_count:
            self.span_count = row["span_count"]
            rows = selectors.trace_spans(
                trace_id=self.trace.trace_id,
                after=self.cursor.spans.floor,
                limit=LIVE_BATCH_MAX + len(self.seen),
            )
            fresh = _fresh(list(rows), self.seen)
            self.seen.update(s.pk for s in fresh)
            steps = [timeline.span_step(s) for s in fresh]
        out: dict[str, Any] = {"type": "update", "state": "", "steps": []}
        if steps or not self.sent_summary:
            self.trace.refresh_from_db()
            summary = render_to_string("traces/partials/trace_summary.html", {"trace": self.trace})
            if _digest(summary) != self.sent_summary:
                self.sent_summary = _digest(summary)
                out["summary"] = summary
        out["steps"] = [{"id": step.id, "html": _row(step, self.base)} for step in steps]
        spans = self.cursor.spans
        spans.advance(max(self.seen, default=spans.floor), now)
        self.seen = {pk for pk in self.seen if pk > spans.floor}
        if not out["steps"] and "summary" not in out:
            return None
        out["cursor"] = self.cursor.encode()
        return out


class FleetFeed:
    """The fleet page's rows: sent whole when any of them changed. A row is rendered again
    only when what it shows changed (state, end, totals), so a quiet tick costs the three
    queries and no templates."""

    def __init__(self, *, user: Any) -> None:
        self.user = user
        self.rows: dict[str, tuple[tuple[Any, ...], str]] = {}  # row id: (what it shows, html)
        self.sent = False

    def poll(self) -> dict[str, Any] | None:
        runs = selectors.fleet_runs(user=self.user)
        fresh: dict[str, tuple[tuple[Any, ...], str]] = {}
        changed = not self.sent
        for run in runs:
            row_id = f"fleet-run-{run.pk}"
            shown = (run.state, run.ended_at, run.task, run.agent.slug, astuple(run.totals))  # type: ignore[attr-defined]
            cached = self.rows.get(row_id)
            if cached is not None and cached[0] == shown:
                fresh[row_id] = cached
                continue
            changed = True
            html = render_to_string("traces/partials/fleet_row.html", {"run": run})
            fresh[row_id] = (shown, html)
        changed = changed or list(fresh) != list(self.rows)  # one left, or the order moved
        self.rows, self.sent = fresh, True
        if not changed:
            return None
        running = sum(1 for run in runs if run.state == RunState.RUNNING)
        rows = [{"id": row_id, "html": html} for row_id, (_shown, html) in fresh.items()]
        return {"type": "fleet", "rows": rows, "count": len(rows), "running": running}


def run_spans_max_id(run: Run) -> int:
    return spans_max_id(Span.objects.filter(selectors.run_span_filter(run)))


def trace_spans_max_id(trace_id: str) -> int:
    return spans_max_id(Span.objects.filter(trace_id=trace_id))
