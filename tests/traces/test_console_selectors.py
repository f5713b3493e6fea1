"""The console's reads: who sees which runs and traces, each filter of the runs list, the
totals from the Trace rollups, and one run's timeline."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.http import Http404
from django.utils import timezone

from apps.traces import selectors
from apps.traces.models import Trace

from ..factories import make_user
from .runs import a_run_with_a_trace, decide, make_runner, post, span, start_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(org):
    """Two agents in claims and one in payments, a run each (plus a second claims run)."""
    triage = make_runner(org.owner, org.claims, "claims-triage")
    refunds = make_runner(org.owner, org.claims, "refund-bot")
    payer = make_runner(org.other_owner, org.payments, "payer")
    now = timezone.now()
    runs = {
        "triage": start_run(triage, "Triage", started_at=now - timedelta(hours=2)),
        "triage_old": start_run(
            triage, "Old triage", started_at=now - timedelta(days=3), state="finished"
        ),
        "refunds": start_run(refunds, "Refund", started_at=now - timedelta(minutes=5)),
        "payer": start_run(payer, "Pay", started_at=now - timedelta(hours=1), state="failed"),
    }
    return {"triage": triage, "refunds": refunds, "payer": payer, "runs": runs}


def pks(runs) -> set:
    return {r.pk for r in runs}


def test_an_outsider_sees_no_runs_and_gets_404_for_one(org, fleet) -> None:
    run = fleet["runs"]["triage"]
    assert not selectors.run_list(user=org.outsider).exists()
    with pytest.raises(Http404):
        selectors.run_get(user=org.outsider, run_id=run.pk)


def test_department_roles_see_only_their_departments_runs(org, fleet) -> None:
    runs = fleet["runs"]
    claims = pks([runs["triage"], runs["triage_old"], runs["refunds"]])
    assert pks(selectors.run_list(user=org.approver)) == claims  # approver in claims
    assert pks(selectors.run_list(user=org.other_owner)) == {runs["payer"].pk}
    with pytest.raises(Http404):
        selectors.run_get(user=org.other_owner, run_id=runs["triage"].pk)
    everything = claims | {runs["payer"].pk}
    assert pks(selectors.run_list(user=org.finance)) == everything  # organisation-wide
    assert pks(selectors.run_list(user=org.admin)) == everything


def test_a_team_role_sees_the_teams_agents_runs_only(org, fleet) -> None:
    ops = make_runner(org.owner, org.claims, "ops-bot", team=org.claims_ops)
    run = start_run(ops)
    member = make_user("tess", ("approver", org.claims_ops))
    assert pks(selectors.run_list(user=member)) == {run.pk}


def test_runs_are_listed_newest_first(org, fleet) -> None:
    runs = fleet["runs"]
    listed = list(selectors.run_list(user=org.admin))
    assert [r.pk for r in listed] == [
        runs["refunds"].pk, runs["payer"].pk, runs["triage"].pk, runs["triage_old"].pk,
    ]  # fmt: skip


def test_each_filter_narrows_the_runs(org, fleet) -> None:
    runs = fleet["runs"]
    admin = org.admin
    now = timezone.now()
    decide(runs["refunds"], "deny")
    decide(runs["triage"], "allow")
    a_run_with_a_trace(fleet["payer"], runs["payer"])  # has an errored tool span
    Trace.objects.filter(run=runs["payer"]).update(cost_usd=Decimal("2.5"))

    def listed(**filters) -> set:
        return pks(selectors.run_list(user=admin, **filters))

    assert listed(agent="claims-triage") == pks([runs["triage"], runs["triage_old"]])
    assert listed(department="payments") == {runs["payer"].pk}
    assert listed(state="finished") == {runs["triage_old"].pk}
    assert listed(state="running") == pks([runs["triage"], runs["refunds"]])
    assert listed(since=now - timedelta(hours=1, minutes=30)) == pks(
        [runs["refunds"], runs["payer"]]
    )
    assert listed(until=now - timedelta(days=1)) == {runs["triage_old"].pk}
    assert listed(cost_min=Decimal("1")) == {runs["payer"].pk}
    assert listed(cost_min=Decimal("3")) == set()
    assert listed(has_denials=True) == {runs["refunds"].pk}
    assert listed(has_errors=True) == {runs["payer"].pk}
    assert listed(department="claims", state="running", has_denials=True) == {runs["refunds"].pk}


def test_totals_add_up_the_trace_rollups_of_each_run(org, fleet) -> None:
    run = fleet["runs"]["triage"]
    a_run_with_a_trace(fleet["triage"], run)
    a_run_with_a_trace(fleet["triage"], run, cost_tokens=800)  # a second trace, same run
    Trace.objects.filter(run=run).update(cost_usd=Decimal("0.25"))
    decide(run, "allow")
    decide(run, "deny")
    totals = selectors.run_totals([run.pk, fleet["runs"]["refunds"].pk])
    t = totals[run.pk]
    assert (t.spans, t.errors, t.input_tokens, t.output_tokens) == (8, 2, 3200, 160)
    assert (t.cost_usd, t.decisions, t.denials) == (Decimal("0.5"), 2, 1)
    assert totals[fleet["runs"]["refunds"].pk].spans == 0


def test_traces_without_a_run_are_listed_with_the_same_scoping(org, fleet) -> None:
    trace_id = os.urandom(16)
    post(
        fleet["payer"],
        span("invoke_agent nightly", start=timezone.now(), trace_id=trace_id,
             gen_ai__agent__name="payer"),
    )  # fmt: skip
    a_run_with_a_trace(fleet["payer"], fleet["runs"]["payer"])  # a trace with a run: not listed
    orphan = Trace.objects.get(trace_id=trace_id.hex())
    assert [t.pk for t in selectors.trace_list(user=org.other_owner)] == [orphan.pk]
    assert not selectors.trace_list(user=org.approver).exists()  # claims only
    assert not selectors.trace_list(user=org.outsider).exists()
    assert [t.pk for t in selectors.trace_list(user=org.admin, department="payments")] == [
        orphan.pk
    ]
    assert not selectors.trace_list(user=org.admin, agent="claims-triage").exists()
    with pytest.raises(Http404):
        selectors.trace_get(user=org.approver, trace_id=orphan.trace_id)


def test_traces_of_unregistered_agents_are_for_admins_only(org, fleet) -> None:
    post(
        fleet["payer"],
        span("shadow", start=timezone.now(), trace_id=os.urandom(16),
             gen_ai__agent__name="shadow-bot"),
    )  # fmt: skip
    assert selectors.trace_list(user=org.admin).filter(agent=None).count() == 1
    assert not selectors.trace_list(user=org.auditor).filter(agent=None).exists()


def test_the_timeline_merges_spans_decisions_and_run_events_in_time_order(org, fleet) -> None:
    run = start_run(fleet["refunds"])  # started now, as its audit event says
    ids = a_run_with_a_trace(fleet["refunds"], run)
    decide(run, at=run.started_at + timedelta(milliseconds=990))
    decide(run, "deny", at=run.started_at + timedelta(milliseconds=1500), target="payment-refund")
    tl = selectors.run_timeline(user=org.owner, run=run)
    assert [(s.type, s.phase) for s in tl.steps] == [
        ("request", "Request"),
        ("identity", "Agent identity"),
        ("audit", "Run event"),  # runtime.run.started
        ("span", "Agent"),
        ("span", "Model call"),
        ("span", "Retrieved context"),
        ("decision", "Policy decision"),
        ("span", "Tool call"),
        ("decision", "Policy decision"),
        ("outcome", "Cost and latency"),
    ]
    by_label = {s.label: s for s in tl.steps}
    assert by_label["chat gpt-4o"].depth == 1  # under the agent span
    allowed = tl.steps[6]
    assert allowed.parent_key == f"{ids['trace_id'].hex()}:{ids['root'].hex()}"
    assert [s.type for s in tl.errors] == ["span", "decision"]  # the error path
    assert tl.totals is not None and tl.totals.spans == 4 and tl.totals.denials == 1
    assert not tl.steps[-1].error  # errors on its path, but the run has not failed


def test_a_span_of_the_runs_trace_without_the_run_id_is_in_its_timeline(org, fleet) -> None:
    run = fleet["runs"]["triage"]
    ids = a_run_with_a_trace(fleet["triage"], run)
    post(
        fleet["triage"],
        span("late child", start=run.started_at + timedelta(seconds=1), trace_id=ids["trace_id"],
             parent=ids["root"]),
    )  # fmt: skip
    labels = [s.label for s in selectors.run_timeline(user=org.owner, run=run).steps]
    assert "late child" in labels


def test_the_timeline_takes_a_constant_number_of_queries(
    org, fleet, django_assert_max_num_queries
) -> None:
    run = fleet["runs"]["triage"]
    for _ in range(5):
        a_run_with_a_trace(fleet["triage"], run)
    for _ in range(10):
        decide(run)
    run = selectors.run_get(user=org.owner, run_id=run.pk)
    with django_assert_max_num_queries(6):
        tl = selectors.run_timeline(user=org.owner, run=run)
        for step in tl.steps:  # what the rows render touches
            _ = (step.label, step.detail, step.phase)
    assert tl.spans_shown == 20


def test_a_step_is_found_only_in_its_own_run(org, fleet) -> None:
    triage, refunds = fleet["runs"]["triage"], fleet["runs"]["refunds"]
    a_run_with_a_trace(fleet["triage"], triage)
    mine = decide(triage)
    span_id = selectors.run_timeline(user=org.owner, run=triage).steps[3].id
    assert selectors.run_step(user=org.owner, run=triage, step_id=f"decision-{mine.pk}").obj == mine
    assert selectors.run_step(user=org.owner, run=triage, step_id=span_id).type == "span"
    for step_id in (
        f"decision-{mine.pk}",
        span_id,
        "span-x",
        "decision-99999999999999999999",
        "nope",
    ):
        with pytest.raises(Http404):
            selectors.run_step(user=org.owner, run=refunds, step_id=step_id)
    outcome = selectors.run_step(user=org.owner, run=triage, step_id="outcome")
    assert [s.label for s in outcome.error_path] == ["execute_tool crm-lookup"]
