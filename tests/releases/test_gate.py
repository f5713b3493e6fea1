"""The promotion gate: every enabled suite on the version, against its minimum pass rate and
the version serving in the target environment; and version_promote held back by it, with the
blocked evaluation runs kept."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry.models import AgentVersion, Deployment
from apps.releases.evals import suite_create, suite_evaluate
from apps.releases.gate import promotion_gate
from apps.releases.models import EvalRun
from apps.releases.services import version_promote
from apps.runtime.constants import RunState

from .test_evals import (
    good_answer,
    hook_suite,
    make_agent,
    new_version,
    record_run,
    recorded_suite,
    serve_hook,
)

TASKS = [f"Triage claim {n}" for n in range(1, 5)]


@pytest.fixture
def agent(org):
    return make_agent(org)


@pytest.fixture
def v1(agent) -> AgentVersion:
    return agent.versions.get(number=1)


def four_case_suite(org, agent, **extra):
    return recorded_suite(org, agent, *({"task": task} for task in TASKS), **extra)


def record(agent, version, *, failing: int = 0) -> None:
    """A finished run of ``version`` for each task, the first ``failing`` of them failed."""
    for n, task in enumerate(TASKS):
        state = RunState.FAILED if n < failing else RunState.FINISHED
        record_run(agent, version, task, state=state)


def serve_in_prod(agent, version) -> None:
    Deployment.objects.update_or_create(
        agent=agent,
        environment="prod",
        defaults={"version": version, "deployed_by_name": "alice", "deployed_at": timezone.now()},
    )


def test_an_agent_without_suites_passes(org, agent, v1):
    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert (verdict.passed, verdict.message, verdict.details) == (True, "no evaluation suites", [])
    assert not EvalRun.objects.exists()


def test_passing_suites_pass_and_their_runs_are_kept_and_audited(org, agent, v1):
    suite = four_case_suite(org, agent)
    record(agent, v1)

    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert (verdict.passed, verdict.message, verdict.details) == (
        True, "1 evaluation suite passed", [],
    )  # fmt: skip
    run = EvalRun.objects.get()
    assert (run.suite, run.environment, run.verdict, run.actor_name) == (
        suite, "dev", "passed", "alice",
    )  # fmt: skip
    assert verdict.summary == {
        "verdict": "passed",
        "suites": [
            {
                "suite": "triage-basics", "eval_run": run.pk, "passed": 4, "total": 4,
                "pass_rate": 100.0, "min_pass_rate": 90, "reference_version": None,
                "reference_rate": None, "verdict": "passed",
            }
        ],
    }  # fmt: skip
    event = AuditEvent.objects.get(action="releases.version.evaluated")
    assert event.message == "v1 evaluated for dev: passed"
    assert event.after["suites"][0]["eval_run"] == run.pk


def test_a_suite_below_its_minimum_pass_rate_blocks(org, agent, v1):
    four_case_suite(org, agent, min_pass_rate=80)
    record(agent, v1, failing=1)

    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert not verdict.passed
    assert verdict.message == (
        "v1 cannot go to dev: suite Triage basics passed 3 of 4 cases (75%); at least 80% must "
        "pass. Fix the failing cases listed (or the suite), then promote again."
    )
    assert verdict.details[0] == "triage-basics: passed 3 of 4 cases (75%); at least 80% must pass"
    assert verdict.details[1].startswith("triage-basics / case 1: did not finish (run ")
    assert len(verdict.details) == 2
    assert EvalRun.objects.get().verdict == "blocked"
    assert verdict.summary["verdict"] == "blocked"


def test_exactly_the_minimum_pass_rate_passes(org, agent, v1):
    four_case_suite(org, agent, min_pass_rate=75)
    record(agent, v1, failing=1)

    assert promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner).passed


def test_falling_further_than_allowed_below_the_serving_version_blocks(org, agent, v1):
    suite = four_case_suite(org, agent, min_pass_rate=50, max_regression_points=20)
    record(agent, v1)
    suite_evaluate(suite=suite, version=v1, actor_name="alice", environment="prod")
    serve_in_prod(agent, v1)
    v2 = new_version(org, agent, "Triage the claim, briefly.")
    record(agent, v2, failing=1)

    verdict = promotion_gate(agent=agent, version=v2, environment="prod", actor=org.owner)

    assert not verdict.passed
    assert "25 points below v1's 100% (at most 20 allowed)" in verdict.message
    blocked = EvalRun.objects.get(version=v2)
    assert (blocked.reference_version, blocked.reference_rate, blocked.pass_rate) == (
        v1, 100.0, 75.0,
    )  # fmt: skip
    assert verdict.summary["suites"][0]["reference_version"] == 1
    assert verdict.summary["suites"][0]["reference_rate"] == 100.0


def test_a_regression_within_the_allowance_passes(org, agent, v1):
    suite = four_case_suite(org, agent, min_pass_rate=50, max_regression_points=25)
    record(agent, v1)
    suite_evaluate(suite=suite, version=v1, actor_name="alice")
    serve_in_prod(agent, v1)
    v2 = new_version(org, agent, "Triage the claim, briefly.")
    record(agent, v2, failing=1)

    assert promotion_gate(agent=agent, version=v2, environment="prod", actor=org.owner).passed


def test_the_reference_is_the_serving_versions_latest_run(org, agent, v1):
    suite = four_case_suite(org, agent, min_pass_rate=0, max_regression_points=10)
    record(agent, v1, failing=2)
    suite_evaluate(suite=suite, version=v1, actor_name="alice")  # 50 %, older
    record(agent, v1)
    suite_evaluate(suite=suite, version=v1, actor_name="alice")  # 100 %, the latest
    serve_in_prod(agent, v1)
    v2 = new_version(org, agent, "Triage the claim, briefly.")
    record(agent, v2, failing=1)

    verdict = promotion_gate(agent=agent, version=v2, environment="prod", actor=org.owner)

    assert not verdict.passed
    assert verdict.summary["suites"][0]["reference_rate"] == 100.0


def test_the_reference_is_the_version_serving_in_the_target_environment(org, agent, v1):
    suite = four_case_suite(org, agent, min_pass_rate=0, max_regression_points=10)
    record(agent, v1)
    suite_evaluate(suite=suite, version=v1, actor_name="alice")
    serve_in_prod(agent, v1)
    v2 = new_version(org, agent, "Triage the claim, briefly.")
    record(agent, v2, failing=2)

    # dev has no deployment: it serves the latest version, v2 itself; nothing to regress from.
    dev = promotion_gate(agent=agent, version=v2, environment="dev", actor=org.owner)
    prod = promotion_gate(agent=agent, version=v2, environment="prod", actor=org.owner)

    assert dev.passed and dev.summary["suites"][0]["reference_rate"] is None
    assert not prod.passed and prod.summary["suites"][0]["reference_version"] == 1


def test_disabled_suites_are_not_evaluated(org, agent, v1):
    suite_create(actor=org.owner, agent=agent, data={"name": "Retired", "enabled": False})

    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert verdict.message == "no evaluation suites"
    assert not EvalRun.objects.exists()


def test_a_suite_without_cases_blocks_rather_than_passing_unchecked(org, agent, v1):
    suite_create(actor=org.owner, agent=agent, data={"name": "Empty"})

    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert not verdict.passed
    assert verdict.details == ["empty: has no cases: add cases, or disable the suite"]


def test_every_blocking_suite_is_named(org, agent, v1):
    recorded_suite(org, agent, {"task": "Nobody ran this"})
    with serve_hook(good_answer(outcome="escalated")) as hook:
        hook_suite(org, agent, hook.url, {"task": "Triage", "expected_outcome": "triaged"})
        verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert "suite Replays passed 0 of 1 cases" in verdict.message
    assert "suite Triage basics passed 0 of 1 cases" in verdict.message
    assert "replays / case 1: outcome 'escalated', expected 'triaged'" in verdict.details
    assert "triage-basics / case 1: no recorded run of v1 for this task" in verdict.details
    assert EvalRun.objects.filter(verdict="blocked").count() == 2
    event = AuditEvent.objects.get(action="releases.version.evaluated")
    assert event.message == "v1 evaluated for dev: blocked by replays, triage-basics"


def test_details_are_capped_but_every_case_is_kept(org, agent, v1):
    suite = recorded_suite(org, agent, *({"task": f"Task {n}"} for n in range(80)))

    verdict = promotion_gate(agent=agent, version=v1, environment="dev", actor=org.owner)

    assert len(verdict.details) == 50
    assert verdict.details[-1] == "… and 32 more (see the evaluation runs)"
    assert len(EvalRun.objects.get(suite=suite).results) == 80


# --- version_promote ---------------------------------------------------------------------------


def test_a_failing_suite_blocks_the_promotion_and_its_run_is_kept(org, agent, v1):
    recorded_suite(org, agent, {"task": "Triage claim 42", "expected_outcome": "triaged"})
    record_run(agent, v1, "Triage claim 42", outcome="escalated")

    with pytest.raises(ApplicationError) as caught:
        version_promote(actor=org.owner, agent=agent, version=v1, environment="dev")

    assert caught.value.message.startswith("v1 cannot go to dev: suite Triage basics passed 0")
    assert caught.value.details == {
        "evaluation": [
            "triage-basics: passed 0 of 1 cases (0%); at least 90% must pass",
            "triage-basics / case 1: outcome 'escalated', expected 'triaged'",
        ]
    }
    assert not Deployment.objects.filter(agent=agent).exists()
    blocked = EvalRun.objects.get()  # survived the release's rollback
    assert (blocked.verdict, blocked.environment, blocked.version) == ("blocked", "dev", v1)
    assert AuditEvent.objects.filter(action="releases.version.evaluated").count() == 1
    assert not AuditEvent.objects.filter(action="releases.version.promoted").exists()


def test_a_passing_suite_lets_the_promotion_through_with_its_evaluation_audited(org, agent, v1):
    recorded_suite(org, agent, {"task": "Triage claim 42", "expected_outcome": "triaged"})
    record_run(agent, v1, "Triage claim 42")

    deployment = version_promote(actor=org.owner, agent=agent, version=v1, environment="dev")

    assert (deployment.environment, deployment.version) == ("dev", v1)
    promoted = AuditEvent.objects.get(action="releases.version.promoted")
    evaluation = promoted.after["evaluation"]
    assert evaluation["verdict"] == "passed"
    assert evaluation["suites"][0]["eval_run"] == EvalRun.objects.get().pk


def test_a_promotion_that_cannot_happen_evaluates_nothing(org, agent, v1):
    with serve_hook(good_answer()) as hook:
        hook_suite(org, agent, hook.url, {"task": "Triage claim 42"})
        with pytest.raises(NotPermitted):
            version_promote(actor=org.outsider, agent=agent, version=v1, environment="dev")
        with pytest.raises(ApplicationError, match="does not run in staging"):
            version_promote(actor=org.owner, agent=agent, version=v1, environment="staging")
        new_version(org, agent, "Triage the claim, briefly.")  # dev now serves v2
        with pytest.raises(ApplicationError, match="v1 does not serve in dev"):
            version_promote(actor=org.owner, agent=agent, version=v1, environment="prod")

    assert hook.requests == []
    assert not EvalRun.objects.exists()


def test_a_hook_suite_gates_the_whole_path(org, agent, v1):
    with serve_hook(good_answer()) as hook:
        hook_suite(org, agent, hook.url, {"task": "Triage claim 42", "expected_outcome": "triaged"})
        version_promote(actor=org.owner, agent=agent, version=v1, environment="dev")
        version_promote(actor=org.owner, agent=agent, version=v1, environment="prod")

    assert len(hook.requests) == 2
    assert list(EvalRun.objects.order_by("id").values_list("environment", "verdict")) == [
        ("dev", "passed"),
        ("prod", "passed"),
    ]
