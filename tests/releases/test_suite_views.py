"""Evaluation suites from the console: an owner adds a suite and its cases and runs it; bad
input is shown on the form; nobody else changes them."""

from __future__ import annotations

import pytest

from apps.registry import services as registry
from apps.releases.models import EvalRun, EvalSuite

from ..clients import console_client

pytestmark = pytest.mark.django_db
SUITES = "/agents/claims-approver/releases/suites/"


@pytest.fixture
def agent(org):
    return registry.agent_create(
        actor=org.owner,
        data={
            "name": "Claims approver", "slug": "claims-approver", "mission": "Approve claims.",
            "department": org.claims, "environments": ["dev", "prod"], "status": "active",
        },
    )  # fmt: skip


def test_an_owner_adds_a_suite_and_a_case_and_evaluates_a_version(org, agent):
    client = console_client(org.owner)
    assert "No evaluation suite yet" in client.get(SUITES).content.decode()
    made = client.post(
        SUITES,
        {
            "name": "Golden claims",
            "mode": "recorded",
            "min_pass_rate": 90,
            "max_regression_points": 5,
        },
    )
    assert made.status_code == 302 and made["Location"] == f"{SUITES}golden-claims/"
    case = client.post(f"{SUITES}golden-claims/", {
        "name": "small claim", "task": "Adjudicate claim 1", "expected_outcome": "approved",
        "required_tools": "policy-lookup, fraud-score", "must_finish": "on",
    })  # fmt: skip
    assert case.status_code == 302
    suite = EvalSuite.objects.get()
    assert suite.cases.get().required_tools == ["policy-lookup", "fraud-score"]
    ran = client.post(f"{SUITES}golden-claims/evaluate", {"version": 1})
    assert ran.status_code == 302
    run = EvalRun.objects.get()
    assert (run.passed, run.total, run.verdict) == (0, 1, "blocked")  # no recorded run yet
    page = client.get(f"{SUITES}golden-claims/").content.decode()
    assert "no recorded run of v1" in page
    assert client.post(f"{SUITES}golden-claims/delete").status_code == 302
    assert not EvalSuite.objects.exists()


def test_bad_suite_and_case_input_is_shown_on_the_form(org, agent):
    client = console_client(org.owner)
    hook = client.post(
        SUITES, {"name": "Replay", "mode": "hook", "min_pass_rate": 90, "max_regression_points": 5}
    )
    assert hook.status_code == 400 and "eval hook" in hook.content.decode()
    odd = client.post(
        SUITES, {"name": "", "mode": "nope", "min_pass_rate": 900, "max_regression_points": 5}
    )
    assert odd.status_code == 400
    client.post(
        SUITES,
        {"name": "Golden", "mode": "recorded", "min_pass_rate": 90, "max_regression_points": 5},
    )
    bad = client.post(
        f"{SUITES}golden/", {"name": "c", "task": "t", "required_tools": "Not A Slug"}
    )
    assert bad.status_code == 400
    assert not EvalSuite.objects.get().cases.exists()


def test_only_the_owner_or_an_admin_changes_suites(org, agent):
    console_client(org.owner).post(
        SUITES,
        {"name": "Golden", "mode": "recorded", "min_pass_rate": 90, "max_regression_points": 5},
    )
    approver = console_client(org.approver)
    assert approver.get(SUITES).status_code == 200
    assert (
        approver.post(
            SUITES,
            {"name": "Mine", "mode": "recorded", "min_pass_rate": 90, "max_regression_points": 5},
        ).status_code
        == 403
    )
    assert approver.post(f"{SUITES}golden/delete").status_code == 403
    assert console_client(org.other_owner).get(SUITES).status_code == 404
    assert EvalSuite.objects.count() == 1
