"""The drift job samples each ended run once, from what the runtime recorded about it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.drift.collect import samples_collect
from apps.drift.models import RunMetric, RunSample
from apps.runtime.models import Run

from .conftest import bearer

pytestmark = pytest.mark.django_db
RUNS = "/api/v1/runtime/runs/"
DECIDE = "/api/v1/runtime/decisions/"


def _run_with_steps(claims, outcome: str) -> str:
    started = bearer(claims.secret).post(RUNS, {"task": "Approve claim 7"}, format="json")
    assert started.status_code == 201, started.json()
    body = started.json()
    assert body["behaviour"]["knowledge_base_version"] == "kb-2026-01"
    agent = bearer(body["token"])
    for tool, action in (("policy-lookup", "read"), ("policy-lookup", "read"), ("wire", "send")):
        answer = agent.post(
            DECIDE, {"action": "tool.invoke", "tool": tool, "tool_action": action}, format="json"
        )
        assert answer.status_code == 200
    reported = agent.post(
        f"{RUNS}{body['run']['id']}/metrics",
        {"metrics": {"claim_amount": 1250, "pages.read": 3}},
        format="json",
    )
    assert reported.status_code == 200 and reported.json() == {"recorded": 2}
    finished = agent.post(
        f"{RUNS}{body['run']['id']}/finish",
        {"state": "finished", "outcome": outcome},
        format="json",
    )
    assert finished.status_code == 200
    return body["run"]["id"]


def test_a_finished_run_is_sampled_with_its_steps_outcome_and_metrics(claims):
    run_id = _run_with_steps(claims, "approved")
    later = timezone.now() + timedelta(minutes=2)
    assert samples_collect(now=later) == 1
    sample = RunSample.objects.get(run_id=run_id)
    assert sample.outcome == "approved" and not sample.failed
    assert sample.tool_calls == {"policy-lookup": 2, "wire": 1}
    assert (sample.decisions, sample.denials, sample.asks) == (3, 1, 0)
    assert sample.metrics == {"claim_amount": 1250.0, "pages.read": 3.0}
    assert sample.version_id == claims.agent.versions.order_by("-number").first().pk
    assert samples_collect(now=later) == 0  # once only


def test_a_run_that_just_ended_waits_for_its_last_spans(claims, settings):
    settings.DRIFT_SETTLE_SECONDS = 60
    _run_with_steps(claims, "approved")
    assert samples_collect(now=timezone.now()) == 0
    assert samples_collect(now=timezone.now() + timedelta(seconds=61)) == 1


def test_a_running_run_is_not_sampled(claims):
    started = bearer(claims.secret).post(RUNS, {"task": "Approve claim 8"}, format="json")
    assert started.status_code == 201
    assert samples_collect(now=timezone.now() + timedelta(hours=1)) == 0
    assert Run.objects.count() == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "metrics"),
        ({"metrics": {}}, "metrics"),
        ({"metrics": {"Bad Name": 1}}, "metric name"),
        ({"metrics": {"ok": "NaN"}}, "valid number"),
        ({"metrics": {"ok": "seven"}}, "number"),
        ({"metrics": {f"m{i}": i for i in range(51)}}, "At most 50"),
        ({"metrics": {"ok": 1}, "extra": 1}, "extra"),
    ],
)
def test_bad_metrics_are_refused_with_a_message_and_nothing_is_kept(claims, body, message):
    started = bearer(claims.secret).post(RUNS, {"task": "Approve claim 9"}, format="json").json()
    answer = bearer(started["token"]).post(
        f"{RUNS}{started['run']['id']}/metrics", body, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert message.lower() in str(answer.json()).lower()
    assert RunMetric.objects.count() == 0


def test_a_run_token_cannot_report_metrics_for_another_run(claims):
    first = bearer(claims.secret).post(RUNS, {"task": "One"}, format="json").json()
    second = bearer(claims.secret).post(RUNS, {"task": "Two"}, format="json").json()
    answer = bearer(first["token"]).post(
        f"{RUNS}{second['run']['id']}/metrics", {"metrics": {"a": 1}}, format="json"
    )
    assert answer.status_code == 403
    unauthenticated = bearer("tth_run_nope").post(
        f"{RUNS}{second['run']['id']}/metrics", {"metrics": {"a": 1}}, format="json"
    )
    assert unauthenticated.status_code == 401


def test_the_database_and_the_python_collections_write_the_same_samples(claims):
    """PostgreSQL samples in one statement; SQLite (the embedded demo) builds them in Python."""
    from apps.drift import collect

    for outcome in ("approved", "rejected", "approved"):
        _run_with_steps(claims, outcome)
    later = timezone.now() + timedelta(minutes=2)
    columns = [f.name for f in RunSample._meta.fields]
    assert samples_collect(now=later) == 3  # on PostgreSQL: the statement
    in_database = sorted(RunSample.objects.values_list(*columns))
    RunSample.objects.all().delete()
    since = later - timedelta(days=1)
    assert collect._collect_in_python(since, later - timedelta(seconds=60), 100) == 3
    assert sorted(RunSample.objects.values_list(*columns)) == in_database
