"""What a live page is sent (apps/traces/feeds.py): the cursor's settled floors, rows that
commit out of id order, and feeds that stay quiet -- one query -- while nothing changes."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.runtime.models import Decision
from apps.traces import selectors
from apps.traces.constants import LIVE_GRACE_SECONDS
from apps.traces.feeds import Cursor, FleetFeed, RunFeed, Source, TraceFeed
from apps.traces.models import Trace

from .runs import a_run_with_a_trace, decide, make_runner, post, span, start_run

pytestmark = pytest.mark.django_db

NOW = 1_800_000_000.0  # the feeds' clock, passed in: no timers


@pytest.fixture
def runner(org):
    return make_runner(org.owner, org.claims, "claims-triage")


def feed_for(run, cursor: Cursor | None = None) -> RunFeed:
    run = selectors.run_get(user=run.agent.owner, run_id=run.pk)
    return RunFeed(run=run, cursor=cursor or Cursor())


def ids(message: dict | None) -> list[str]:
    return [step["id"] for step in (message or {}).get("steps", [])]


def test_a_cursor_survives_the_round_trip_and_garbage_is_refused() -> None:
    cursor = Cursor(Source(10, 12, 1700000000.5), Source(3, 3, 0), Source(0, 7, 12.25))
    assert Cursor.decode(cursor.encode()) == cursor
    for text in ("", "1", "2.0.0.0.0.0.0.0.0.0", "1.a.0.0.0.0.0.0.0.0", "1.-1.0.0.0.0.0.0.0.0"):
        with pytest.raises(ValueError):
            Cursor.decode(text)


def test_the_newest_id_settles_only_after_the_grace_period() -> None:
    source = Source()
    source.advance(20, NOW)
    assert (source.floor, source.candidate) == (0, 20)
    source.advance(25, NOW + LIVE_GRACE_SECONDS - 1)  # still pending: 20 does not move
    assert (source.floor, source.candidate) == (0, 20)
    source.advance(25, NOW + LIVE_GRACE_SECONDS)
    assert (source.floor, source.candidate, source.since) == (20, 25, NOW + LIVE_GRACE_SECONDS)


def test_a_decision_that_commits_after_a_newer_one_is_still_sent(runner) -> None:
    """Ids are taken at insert, rows appear at commit: a smaller id can show up later."""
    run = start_run(runner)
    feed = feed_for(run)
    feed.poll(now=NOW)
    newer = decide_with_id(run, 10_000_020)
    assert ids(feed.poll(now=NOW + 1)) == ["decision-10000020", "outcome"]
    older = decide_with_id(run, 10_000_010)  # its transaction committed after the newer one's
    assert ids(feed.poll(now=NOW + 2)) == ["decision-10000010", "outcome"]
    # Once the newest id has been seen for the grace period it is settled...
    assert feed.poll(now=NOW + 1 + LIVE_GRACE_SECONDS) is None
    assert feed.cursor.decisions.floor == newer.pk
    # ... and the rows at or below it are not read again.
    assert older.pk < feed.cursor.decisions.floor


def decide_with_id(run, pk: int) -> Decision:
    """A decision with a chosen id: as if its id was taken before its commit became visible."""
    return Decision.objects.create(
        id=pk, run=run, agent=run.agent, environment=run.environment, action="tool.invoke",
        target=f"tool-{pk}", disposition="allow", reasons=["allowed"], reasoning="Granted.",
        policies=[], budgets={}, created_at=timezone.now(),
    )  # fmt: skip


def test_an_idle_feed_sends_nothing_and_asks_one_query(runner, django_assert_num_queries) -> None:
    run = start_run(runner)
    a_run_with_a_trace(runner, run)
    feed = feed_for(run)
    first = feed.poll(now=NOW)
    assert first is not None and "summary" in first
    assert sum(i.startswith("span-") for i in ids(first)) == 4
    with django_assert_num_queries(1):
        assert feed.poll(now=NOW + 0.5) is None


def test_new_rows_of_each_kind_are_sent_once(runner) -> None:
    run = start_run(runner)
    feed = feed_for(run)
    feed.poll(now=NOW)
    decision = decide(run, "deny")
    message = feed.poll(now=NOW + 1)
    assert ids(message) == [f"decision-{decision.pk}", "outcome"]
    assert "1 denied" in message["summary"]
    assert feed.poll(now=NOW + 2) is None  # sent once, though still above the floor
    trace_id, root = os.urandom(16), os.urandom(8)
    post(runner, span("root", start=run.started_at, trace_id=trace_id, span_id=root,
                      tether__run__id=str(run.pk)))  # fmt: skip
    # A child without the run id, in the run's trace: the rollups move, the feed finds it.
    post(runner, span("child", start=run.started_at, trace_id=trace_id, parent=root))
    labels = [step["html"] for step in feed.poll(now=NOW + 3)["steps"]]
    assert sum("wf-row--span" in html for html in labels) == 2


def test_a_state_change_sends_the_summary_and_the_outcome(runner) -> None:
    run = start_run(runner)
    feed = feed_for(run)
    feed.poll(now=NOW)
    from apps.runtime import services as runtime

    runtime.run_finish(run=run, state="finished", outcome="done")
    message = feed.poll(now=NOW + 1)
    assert message["state"] == "finished"
    assert "Finished" in message["summary"]
    assert "audit-" in ids(message)[0] and ids(message)[-1] == "outcome"


def test_a_page_rendered_with_rows_is_not_sent_them_again_once_settled(runner) -> None:
    run = start_run(runner)
    a_run_with_a_trace(runner, run)
    Decision.objects.create(
        run=run, agent=run.agent, environment=run.environment, action="tool.invoke",
        target="old", disposition="allow", reasons=[], reasoning="", policies=[], budgets={},
        created_at=timezone.now() - timedelta(minutes=5),
    )  # fmt: skip
    from apps.traces.feeds import page_cursor

    tl = selectors.run_timeline(user=run.agent.owner, run=run)
    cursor = Cursor.decode(page_cursor(tl))
    assert cursor.decisions.floor > 0  # written long ago: settled
    assert cursor.spans.candidate > cursor.spans.floor  # just stored: pending
    message = feed_for(run, cursor).poll(now=NOW)
    # The pending spans come again (the page drops rows it has); the settled decision not.
    assert not any(i.startswith("decision-") for i in ids(message))


def test_a_trace_feed_follows_its_spans_and_says_when_it_joins_a_run(runner) -> None:
    trace_id = os.urandom(16)
    post(runner, span("invoke_agent digest", start=timezone.now(), trace_id=trace_id))
    trace = Trace.objects.get(trace_id=trace_id.hex())
    feed = TraceFeed(trace=trace, cursor=Cursor())
    assert len(ids(feed.poll(now=NOW))) == 1
    assert feed.poll(now=NOW + 1) is None
    post(runner, span("chat", start=timezone.now(), trace_id=trace_id))
    assert len(ids(feed.poll(now=NOW + 2))) == 1
    run = start_run(runner)
    Trace.objects.filter(pk=trace.pk).update(run=run)
    assert feed.poll(now=NOW + 3) == {"type": "moved", "url": f"/runs/{run.pk}/"}


def test_the_fleet_feed_sends_its_rows_when_one_changed(org, runner) -> None:
    feed = FleetFeed(user=org.approver)
    run = start_run(runner)
    first = feed.poll()
    assert first is not None and [r["id"] for r in first["rows"]] == [f"fleet-run-{run.pk}"]
    assert first["running"] == 1
    assert feed.poll() is None
    decide(run, "deny")
    assert "1 denied" in feed.poll()["rows"][0]["html"]
    assert FleetFeed(user=org.other_owner).poll()["rows"] == []
