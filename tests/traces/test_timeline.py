"""apps/traces/timeline.py on its own: nesting, order and placement of a run's steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.traces.timeline import Step, nest, order, place

T0 = datetime(2025, 11, 24, 12, 0, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def span(key: str, start: float, end: float, parent: str = "") -> Step:
    return Step(
        id=f"span-{key}", type="span", kind="tool", phase="Tool call", label=key,
        start=at(start), end=at(end), span_key=f"t:{key}", parent_key=f"t:{parent}" if parent else "",
    )  # fmt: skip


def decision(key: str, when: float) -> Step:
    return Step(
        id=f"decision-{key}", type="decision", kind="allow", phase="Policy decision",
        label=key, start=at(when),
    )  # fmt: skip


def test_spans_nest_under_their_parents_whatever_order_they_arrive_in() -> None:
    steps = [span("leaf", 20, 30, "mid"), span("mid", 10, 40, "root"), span("root", 0, 100)]
    nest(steps)
    assert {s.label: s.depth for s in steps} == {"root": 0, "mid": 1, "leaf": 2}


def test_a_span_whose_parent_is_not_stored_yet_or_a_cycle_is_a_root() -> None:
    orphan = span("orphan", 0, 10, "missing")
    a, b = span("a", 0, 10, "b"), span("b", 0, 10, "a")
    nest([orphan, a, b])
    assert orphan.depth == 0
    assert sorted([a.depth, b.depth]) == [0, 1]


def test_a_decision_nests_under_the_latest_started_span_still_open() -> None:
    root, llm, tool = (
        span("root", 0, 1000),
        span("llm", 10, 400, "root"),
        span("tool", 600, 900, "root"),
    )
    between, inside, after = (
        decision("between", 500),
        decision("inside", 700),
        decision("after", 2000),
    )
    nest([root, llm, tool, between, inside, after])
    assert (between.parent_key, between.depth) == ("t:root", 1)  # the LLM call had ended
    assert (inside.parent_key, inside.depth) == ("t:tool", 2)
    assert (after.parent_key, after.depth) == ("", 0)


def test_steps_are_ordered_in_time_parents_first_and_the_outcome_last() -> None:
    root, child = span("root", 0, 100), span("child", 0, 50, "root")
    outcome = Step(id="outcome", type="outcome", kind="outcome", phase="Outcome", label="done",
                   start=at(10))  # fmt: skip
    request = Step(id="request", type="request", kind="request", phase="Request", label="task",
                   start=at(0))  # fmt: skip
    early = span("early", -5, 1)  # the agent's clock runs a little behind Tether's
    steps = [outcome, child, root, request, early]
    nest(steps)
    ordered = order(steps)
    assert [s.id for s in ordered] == [
        "request",
        "span-early",
        "span-root",
        "span-child",
        "outcome",
    ]
    assert [s.number for s in ordered] == [1, 2, 3, 4, 5]


def test_bars_are_placed_by_start_and_duration_with_a_visible_minimum() -> None:
    long, tiny, marker = span("long", 0, 500), span("tiny", 250, 250.001), decision("d", 1000)
    place([long, tiny, marker], at(0), at(1000))
    assert (long.offset_pct, long.width_pct) == (0.0, 50.0)
    assert tiny.offset_pct == 25.0 and tiny.width_pct == 0.4
    assert marker.offset_pct == 100.0 and marker.is_marker
