"""The kill switch's effects, engaged through its service: runs stop, tokens die, approvals
are cancelled, traces are held, nothing starts until release, and killed runs stay killed."""

from __future__ import annotations

import pytest

from apps.approvals.constants import ApprovalStatus
from apps.audit.models import AuditEvent
from apps.common.errors import NotPermitted
from apps.killswitch import services as kills
from apps.killswitch.models import KillSwitch
from apps.runtime import services as runtime
from apps.runtime.services import Unauthenticated
from apps.traces.models import LegalHold

from ..approvals.conftest import fresh_caches, gated  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_killing_an_agent_stops_its_runs_refuses_their_tokens_and_every_next_step(
    gated,  # noqa: F811
    org,
):
    other_run, _token = runtime.run_start(credential=gated.run.credential, task="Second")
    assert kills.blast_radius(scope="agent", agent=gated.agent) == {
        "runs": 2,
        "agents": 1,
        "stores": [],
    }

    kill = kills.kill_engage(actor=org.owner, scope="agent", agent=gated.agent, reason="Loop")

    assert kill.runs_killed == 2
    gated.run.refresh_from_db()
    other_run.refresh_from_db()
    assert gated.run.state == other_run.state == "killed"
    with pytest.raises(Unauthenticated, match="killed"):
        runtime.run_authenticate(gated.token)
    # A process still holding the run as running is refused when it records the step.
    gated.run.state = "running"
    answer = gated.ask(tool="crm-lookup", action="read", arguments={})
    assert answer.disposition == "deny" and answer.reasons == ["run_killed"]
    event = AuditEvent.objects.get(action="killswitch.engaged")
    assert event.actor_name == "alice" and event.message == "Loop"
    assert sorted(event.after["runs_killed"]) == sorted([str(gated.run.pk), str(other_run.pk)])


def test_no_run_starts_while_engaged_and_after_release_new_runs_may_while_killed_stay_killed(
    gated,  # noqa: F811
    org,
):
    kill = kills.kill_engage(actor=org.admin, scope="department", department=org.claims,
                             reason="Incident 42")  # fmt: skip
    with pytest.raises(NotPermitted, match="kill switch") as refused:
        runtime.run_start(credential=gated.run.credential, task="Try again")
    assert refused.value.code == "killed"

    kills.kill_release(actor=org.admin, kill=kill, reason="Fixed")

    fresh, _ = runtime.run_start(credential=gated.run.credential, task="After release")
    assert fresh.state == "running"
    gated.run.refresh_from_db()
    assert gated.run.state == "killed"
    assert AuditEvent.objects.filter(action="killswitch.released", message="Fixed").exists()


def test_sub_agent_runs_of_a_killed_run_are_killed_too(gated, org):  # noqa: F811
    from apps.runtime.models import Run

    child = Run.objects.create(
        agent=gated.agent, version=gated.run.version, credential=gated.run.credential,
        environment="prod", task="child", parent=gated.run, token_lookup="child0001",
        token_digest="x", token_expires_at=gated.run.token_expires_at, envelope={},
    )  # fmt: skip

    kills.kill_engage(actor=org.owner, scope="run", run=gated.run, reason="Wrong customer")

    child.refresh_from_db()
    assert child.state == "killed"


def test_pending_approvals_in_scope_are_cancelled_and_traces_held(gated, org):  # noqa: F811
    approval = gated.ask().approval

    kill = kills.kill_engage(actor=org.admin, scope="global", reason="Stop everything")

    approval.refresh_from_db()
    assert approval.status == ApprovalStatus.CANCELLED
    assert "kill switch" in approval.feedback
    assert kill.approvals_cancelled == 1
    hold = LegalHold.objects.get(run=gated.run)
    assert hold.released_at is None and f"Kill switch #{kill.pk}" in hold.reason


def test_an_automatic_engagement_is_marked_and_needs_no_person(gated):  # noqa: F811
    kill = kills.kill_engage(
        actor=None, scope="agent", agent=gated.agent, reason="12 denials in a minute",
        trigger="repeated denials",
    )  # fmt: skip

    assert kill.automatic and kill.engaged_by_name == "tether (repeated denials)"
    assert LegalHold.objects.get(run=gated.run).placed_by is None


def test_who_may_press_it(gated, org):  # noqa: F811
    with pytest.raises(NotPermitted):
        kills.kill_engage(actor=org.approver, scope="agent", agent=gated.agent, reason="x")
    with pytest.raises(NotPermitted):
        kills.kill_engage(actor=org.owner, scope="department", department=org.claims, reason="x")
    with pytest.raises(NotPermitted):
        kills.kill_engage(actor=org.owner, scope="global", reason="x")
    with pytest.raises(Exception, match="Say why"):
        kills.kill_engage(actor=org.admin, scope="global", reason="  ")
    assert not KillSwitch.objects.exists()


def test_the_kill_joins_the_runs_timeline_and_its_incident_report(gated, org):  # noqa: F811
    from apps.traces.incident import incident_report, report_json
    from apps.traces.selectors import run_events

    kills.kill_engage(actor=org.owner, scope="agent", agent=gated.agent, reason="Refund loop")

    events = [e for e in run_events(run=gated.run, limit=100) if e.action == "runtime.run.killed"]
    assert len(events) == 1
    assert events[0].actor_name == "alice" and "Refund loop" in events[0].message
    gated.run.refresh_from_db()
    report = report_json(incident_report(user=org.admin, run=gated.run))
    assert report["proof"]["proven"] is True
    assert report["run"]["state"] == "killed"
    [kill] = report["kill_switch"]["kills"]
    assert (kill["scope"], kill["target"], kill["reason"]) == (
        "agent",
        "refunds-agent",
        "Refund loop",
    )
    assert kill["engaged_by"] == "alice" and kill["runs_killed"] == 1
    assert kill["safe_states"] == []  # the agent declared no safe-state webhook
    # The switch's own audit event is in the report and in its chain proof.
    assert [e["action"] for e in report["kill_switch"]["events"]] == ["killswitch.engaged"]
    proven = {e["action"] for e in report["proof"]["audit_events"] if e["ok"]}
    assert {"killswitch.engaged", "runtime.run.killed"} <= proven
