"""Automatic triggers: an admin's rule engages the kill switch (or suspends the agent) on what
the decision trail shows, or on an event pushed to it — the same effects and audit as a person
pressing it, marked automatic, never twice on what it already stopped."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.killswitch import services as kills
from apps.killswitch import tasks
from apps.killswitch import trigger_services as rules
from apps.killswitch.models import KillSwitch, KillTrigger
from apps.killswitch.triggers import trigger_fire, triggers_evaluate
from apps.registry.models import Agent
from apps.runtime import services as runtime
from apps.runtime.decisions import forget_caches
from apps.runtime.models import Budget, Decision

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)
from ..factories import make_agent

pytestmark = pytest.mark.django_db


def deny(gated: Any, times: int, run: Any = None) -> None:  # noqa: F811
    """``times`` real denials of the run's steps: a tool nobody registered."""
    run = run or gated.run
    for _ in range(times):
        answer = runtime_ask(gated, run, tool="no-such-tool", action="read")
        assert answer.disposition == "deny"


def runtime_ask(gated: Any, run: Any, **request: Any) -> Decision:  # noqa: F811
    from apps.runtime.decisions import DecisionRequest, decide

    return decide(
        run=run,
        request=DecisionRequest(
            action="tool.invoke",
            tool=request["tool"],
            tool_action=request["action"],
            arguments=request.get("arguments", {}),
        ),
    )


def rule(org: Any, **fields: Any) -> KillTrigger:
    fields.setdefault("name", "Loop guard")
    fields.setdefault("kind", "denials")
    fields.setdefault("response", "kill_run")
    return rules.trigger_create(actor=org.admin, **fields)


def backdate(rule: KillTrigger, seconds: int) -> None:
    KillTrigger.objects.filter(pk=rule.pk).update(
        created_at=F("created_at") - timedelta(seconds=seconds)
    )


def recorded_denial(gated: Any, *, seconds_ago: int = 0, reason: str = "tool_unknown") -> None:  # noqa: F811
    """A denial as the decision service records it, ``seconds_ago`` (the trail is append-only,
    so an old one is written old)."""
    Decision.objects.create(
        created_at=timezone.now() - timedelta(seconds=seconds_ago), run=gated.run,
        agent=gated.agent, environment="prod", action="tool.invoke", target="crm-lookup",
        tool_action="read", disposition="deny", reasons=[reason], reasoning="Refused.",
    )  # fmt: skip


def test_a_run_denied_as_often_as_the_threshold_is_killed_automatically_naming_the_rule(
    gated,  # noqa: F811
    org,
):
    guard = rule(org, threshold=3, window_seconds=300)
    deny(gated, 2)
    assert triggers_evaluate() == [] and not KillSwitch.objects.exists()

    deny(gated, 1)
    [firing] = triggers_evaluate()

    kill = KillSwitch.objects.get()
    run_short = str(gated.run.pk)[:8]
    assert firing.kill_id == kill.pk and kill.trigger_rule == guard
    assert kill.automatic and kill.scope == "run" and kill.run == gated.run
    assert kill.trigger == "rule 'Loop guard'"
    assert kill.reason == (
        f"Automatic: rule 'Loop guard' — 3 denials in 5 min on run {run_short} of refunds-agent"
    )
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"  # the same effects as a person pressing it
    engaged = AuditEvent.objects.get(action="killswitch.engaged")
    assert engaged.actor_type == "system" and engaged.actor_name == "tether (rule 'Loop guard')"
    assert engaged.after["automatic"] is True and engaged.after["trigger_rule"] == guard.pk
    assert AuditEvent.objects.filter(action="runtime.run.killed", actor_type="system").exists()
    fired = AuditEvent.objects.get(action="killswitch.trigger.fired")
    assert fired.target_id == str(guard.pk) and fired.after["kill"] == kill.pk
    guard.refresh_from_db()
    assert guard.last_fired_at is not None

    # The killed run's next steps are denials too, but a stop is not fired on twice.
    deny(gated, 3)
    assert triggers_evaluate() == []
    assert KillSwitch.objects.count() == 1


def test_denials_older_than_the_window_do_not_count(gated, org):  # noqa: F811
    guard = rule(org, threshold=3, window_seconds=60)
    backdate(guard, 3600)
    for seconds_ago in (120, 90, 65):  # outside the one-minute window
        recorded_denial(gated, seconds_ago=seconds_ago)
    deny(gated, 2)

    assert triggers_evaluate() == []

    recorded_denial(gated, seconds_ago=30)
    assert len(triggers_evaluate()) == 1
    assert "3 denials in 1 min" in KillSwitch.objects.get().reason


def test_what_happened_before_the_rule_existed_does_not_count(gated, org):  # noqa: F811
    deny(gated, 5)
    rule(org, threshold=3)

    assert triggers_evaluate() == []


def test_tethers_own_stops_and_outages_are_not_counted_as_denials(gated, org):  # noqa: F811
    rule(org, threshold=2, response="kill_agent")
    for reason in (
        "store_unavailable",
        "agent_not_active",
        "run_killed",
        "run_not_running",
        "memory_frozen",
    ):
        recorded_denial(gated, reason=reason)

    assert triggers_evaluate() == []


def test_a_budget_breach_kills_the_agent_and_every_one_of_its_runs(gated, org):  # noqa: F811
    other_run, _ = runtime.run_start(credential=gated.run.credential, task="Second")
    Budget.objects.create(
        name="Calls", kind="tool_calls", scope="run", agent=gated.agent, limit=1, edge="stop"
    )
    forget_caches()
    rule(org, name="Budget stop", kind="budget_breach", response="kill_agent")
    deny(gated, 2)  # denials, but none is a budget's
    assert triggers_evaluate() == []

    lookups = [
        runtime_ask(gated, gated.run, tool="crm-lookup", action="read", arguments={"n": n})
        for n in range(2)
    ]
    assert [d.reasons for d in lookups] == [["allowed"], ["budget_exhausted"]]
    [firing] = triggers_evaluate()

    kill = KillSwitch.objects.get(pk=firing.kill_id)
    assert kill.scope == "agent" and kill.agent == gated.agent and kill.automatic
    assert kill.reason == (
        "Automatic: rule 'Budget stop' — 1 budget-exhausted denial in 5 min on agent refunds-agent"
    )
    gated.run.refresh_from_db()
    other_run.refresh_from_db()
    assert gated.run.state == other_run.state == "killed"
    assert kill.runs_killed == 2


def test_a_circuit_breaker_trip_kills_the_run(gated, org):  # noqa: F811
    rule(org, name="Breaker", kind="circuit_breaker", response="kill_run", window_seconds=60)
    same = {"customer_id": "loop"}
    answers = [
        runtime_ask(gated, gated.run, tool="crm-lookup", action="read", arguments=same)
        for _ in range(5)
    ]
    assert answers[-1].reasons == ["circuit_open"]

    [firing] = triggers_evaluate()

    kill = KillSwitch.objects.get(pk=firing.kill_id)
    assert kill.run == gated.run and kill.trigger_rule.name == "Breaker"
    assert "circuit breaker open 1 time in 1 min on run" in kill.reason
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"


def test_a_rule_counts_only_its_agent_or_department(gated, org):  # noqa: F811
    elsewhere = make_agent(org.payments, org.other_owner, slug="payouts")
    rule(org, name="Payments only", department=org.payments, threshold=1)
    rule(org, name="Other agent only", agent=elsewhere, threshold=1)
    deny(gated, 3)

    assert triggers_evaluate() == []

    rule(org, name="Claims", department=org.claims, threshold=1)
    KillTrigger.objects.update(created_at=F("created_at") - timedelta(minutes=1))
    [firing] = triggers_evaluate()
    assert KillSwitch.objects.get().trigger_rule.name == "Claims"
    assert firing.agent_id == gated.agent.pk


def test_a_disabled_rule_does_nothing_and_a_deleted_one_leaves_its_kills(gated, org):  # noqa: F811
    guard = rule(org, threshold=1)
    rules.trigger_set_enabled(actor=org.admin, rule=guard, enabled=False)
    deny(gated, 3)
    assert triggers_evaluate() == []
    assert trigger_fire("denials", gated.agent, run=gated.run) == []

    rules.trigger_set_enabled(actor=org.admin, rule=guard, enabled=True)
    assert len(triggers_evaluate()) == 1
    rules.trigger_delete(actor=org.admin, rule=guard)

    kill = KillSwitch.objects.get()
    assert kill.engaged and kill.trigger_rule is None and "Loop guard" in kill.reason
    assert AuditEvent.objects.filter(action="killswitch.trigger.deleted").exists()


def test_an_agent_kill_fires_once_while_engaged_and_after_release_only_on_new_denials(
    gated,  # noqa: F811
    org,
):
    rule(org, threshold=2, response="kill_agent")
    deny(gated, 2)
    assert len(triggers_evaluate()) == 1
    assert triggers_evaluate() == []  # engaged: nothing to stop

    kill = KillSwitch.objects.get()
    kills.kill_release(actor=org.admin, kill=kill, reason="Fixed the prompt")
    assert triggers_evaluate() == []  # the denials that engaged it do not engage it again

    fresh, _ = runtime.run_start(credential=gated.run.credential, task="After the fix")
    deny(gated, 1, run=fresh)
    assert triggers_evaluate() == []
    deny(gated, 1, run=fresh)
    assert len(triggers_evaluate()) == 1
    assert KillSwitch.objects.filter(released_at__isnull=True).count() == 1


def test_a_critical_drift_alert_suspends_the_agent_audited_as_tether(gated, org):  # noqa: F811
    rule(org, name="Drift stop", kind="drift_critical", response="suspend_agent")

    [firing] = trigger_fire(
        "drift_critical", gated.agent, detail="tool mix PSI 0.41 against the baseline"
    )

    gated.agent.refresh_from_db()
    assert gated.agent.status == "suspended" and firing.kill_id is None
    change = AuditEvent.objects.filter(action="registry.agent.updated").latest("id")
    assert change.target_id == str(gated.agent.pk) and change.actor_type == "system"
    assert change.actor_name == "tether (rule 'Drift stop')"
    assert change.before["status"] == "active" and change.after["status"] == "suspended"
    assert change.message == (
        "Automatic: rule 'Drift stop' — a critical drift alert on agent refunds-agent: "
        "tool mix PSI 0.41 against the baseline"
    )
    # A suspended agent is refused on every step; a second alert changes nothing.
    answer = runtime_ask(gated, gated.run, tool="crm-lookup", action="read")
    assert answer.reasons == ["agent_not_active"]
    assert trigger_fire("drift_critical", gated.agent) == []
    assert AuditEvent.objects.filter(action="killswitch.trigger.fired").count() == 1


def test_a_drift_alert_kills_the_agent_and_skips_rules_over_other_agents(gated, org):  # noqa: F811
    elsewhere = make_agent(org.payments, org.other_owner, slug="payouts")
    rule(org, name="Drift kill", kind="drift_critical", response="kill_agent")
    rule(org, name="Payouts drift", kind="drift_critical", response="suspend_agent",
         agent=elsewhere)  # fmt: skip

    [firing] = trigger_fire("drift_critical", gated.agent)

    kill = KillSwitch.objects.get(pk=firing.kill_id)
    assert kill.scope == "agent" and kill.automatic and kill.trigger_rule.name == "Drift kill"
    assert Agent.objects.get(pk=elsewhere.pk).status == "active"
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"


def test_repeated_denials_can_suspend_the_agent(gated, org):  # noqa: F811
    rule(org, name="Suspender", threshold=2, response="suspend_agent")
    deny(gated, 2)

    [firing] = triggers_evaluate()

    gated.agent.refresh_from_db()
    assert gated.agent.status == "suspended" and firing.kill_id is None
    assert triggers_evaluate() == []  # still suspended: nothing more to do


def test_the_beat_runs_the_evaluation_every_ten_seconds(gated, org):  # noqa: F811
    entry = settings.CELERY_BEAT_SCHEDULE["kill-triggers"]
    assert entry["task"] == "killswitch.triggers" and entry["schedule"] == 10.0
    rule(org, threshold=1)
    deny(gated, 1)

    assert tasks.triggers() == 1
    assert tasks.triggers() == 0


def test_rules_are_checked_written_by_admins_only_and_audited(org):
    with pytest.raises(NotPermitted):
        rules.trigger_create(actor=org.owner, name="Mine", kind="denials", response="kill_run")
    bad = [
        {"threshold": 0},
        {"window_seconds": 5},
        {"window_seconds": 86_401},
        {"kind": "drift_critical", "response": "kill_agent", "threshold": 3},
        {"kind": "drift_critical", "response": "kill_run"},
        {"department": org.claims, "agent": make_agent(org.claims, org.owner)},
        {"name": "  "},
        {"kind": "weather"},
    ]
    for fields in bad:
        with pytest.raises(ApplicationError) as refused:
            rule(org, **fields)
        assert refused.value.details, fields
    guard = rule(org)
    with pytest.raises(ApplicationError, match="Another rule has this name"):
        rule(org, name="loop GUARD")

    rules.trigger_update(
        actor=org.admin, rule=guard, name="Loop guard", kind="denials", response="kill_agent",
        threshold=5, window_seconds=600,
    )  # fmt: skip

    assert not KillTrigger.objects.exclude(pk=guard.pk).exists()
    updated = AuditEvent.objects.get(action="killswitch.trigger.updated")
    assert updated.before["response"] == "kill_run" and updated.after["threshold"] == 5
    assert AuditEvent.objects.filter(action="killswitch.trigger.created", actor_name="ada").exists()


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_at_once_engage_one_kill(gated, org):  # noqa: F811
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    rule(org, threshold=2, response="kill_agent")
    deny(gated, 2)

    def evaluate(_: int) -> int:
        try:
            return len(triggers_evaluate())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        fired = list(pool.map(evaluate, range(2)))

    assert sorted(fired) == [0, 1]
    assert KillSwitch.objects.count() == 1
    assert AuditEvent.objects.filter(action="killswitch.trigger.fired").count() == 1
