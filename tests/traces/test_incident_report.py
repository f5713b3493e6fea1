"""The incident report: one click from a run gives its whole story with the chain proof."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django.utils.html import escape

from apps.audit.models import AuditEvent
from apps.runtime import services as runtime
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.sealing import SEAL_LAG, canonical_decision, decisions_seal

from .conftest import export, make_span

pytestmark = pytest.mark.django_db


def later():
    """A moment when everything recorded so far is old enough to seal."""
    return timezone.now() + SEAL_LAG + timedelta(seconds=1)


@pytest.fixture
def incident(client, sender):
    """A run that made two decisions (both refused: no such tool) and sent spans."""
    sender.agent.refresh_from_db()
    run, _ = runtime.run_start(credential=sender.credential, task="Refund order o-7")
    for tool in ("payment-refund", "crm-lookup"):
        decide(
            run=run,
            request=DecisionRequest(
                action="tool.invoke", tool=tool, tool_action="create", arguments={"order": "o-7"}
            ),
        )
    spans = [
        make_span("chat gpt-4o", {"tether.run.id": str(run.pk), "gen_ai.usage.input_tokens": 40}),
        make_span("execute_tool payment-refund", {"tether.run.id": str(run.pk)}),
    ]
    body = export(*spans).SerializeToString()
    response = client.post(
        "/v1/traces", data=body, content_type="application/x-protobuf", **sender.auth
    )
    assert response.status_code == 200
    return run


def report(client, user, run, suffix="incident-report.json"):
    client.force_login(user)
    return client.get(f"/runs/{run.pk}/{suffix}")


def test_the_json_report_holds_the_timeline_decisions_costs_versions_and_proof(
    client, org, incident
):
    decisions_seal(now=later())
    response = report(client, org.owner, incident)
    assert response.status_code == 200
    assert "attachment" in response["Content-Disposition"]
    data = response.json()
    assert data["run"]["id"] == str(incident.pk) and data["run"]["agent"] == "claims-triage"
    assert data["versions"]["agent_version"] == incident.version.number
    assert data["costs"]["input_tokens"] == 40
    labels = [step["label"] for step in data["timeline"]]
    assert "chat gpt-4o" in labels and "execute_tool payment-refund" in labels
    assert [d["disposition"] for d in data["decisions"]] == ["deny", "deny"]
    assert all(d["reasons"] for d in data["decisions"])
    # Each decision's hash is the one its seal chained, and the seal is anchored in the chain.
    for row, listed in zip(
        incident.decisions.order_by("id").values(), data["decisions"], strict=True
    ):
        assert listed["sha256"] == hashlib.sha256(canonical_decision(row)).hexdigest()
    proof = data["proof"]
    assert proof["proven"] is True and proof["unsealed_decisions"] == []
    (seal,) = proof["decision_seals"]
    assert seal["ok"] and seal["anchor_seq"] is not None
    actions = [e["action"] for e in proof["audit_events"]]
    assert "runtime.run.started" in actions and "runtime.decisions.sealed" in actions
    assert all(e["ok"] for e in proof["audit_events"])


def test_decisions_not_sealed_yet_are_listed_as_such(client, org, incident):
    data = report(client, org.owner, incident).json()
    assert len(data["proof"]["unsealed_decisions"]) == 2
    assert data["proof"]["decision_seals"] == [] and data["proof"]["proven"] is True


def test_a_tampered_decision_makes_the_proof_fail(client, org, incident):
    decisions_seal(now=later())
    first = incident.decisions.order_by("id").first()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            "UPDATE runtime_decision SET disposition = 'allow' WHERE id = %s", [first.pk]
        )
    data = report(client, org.owner, incident).json()
    assert data["proof"]["proven"] is False
    assert data["proof"]["problems"] == [
        f"decision seal {data['proof']['decision_seals'][0]['seal']} does not match its decisions"
    ]


def test_the_html_report_is_self_contained(client, org, incident):
    decisions_seal(now=later())
    response = report(client, org.auditor, incident, "incident-report/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Chain proof verified" in html and "Refund order o-7" in html
    for decision in incident.decisions.all():
        assert decision.reasons[0] in html and escape(decision.reasoning) in html
    assert "<script" not in html and 'rel="stylesheet"' not in html and "src=" not in html
    download = report(client, org.auditor, incident, "incident-report/?download=1")
    assert download["Content-Disposition"].startswith("attachment;")


def test_taking_a_report_is_audited(client, org, incident):
    report(client, org.owner, incident)
    event = AuditEvent.objects.get(action="traces.incident_report.generated")
    assert (event.actor_name, event.target_id) == (org.owner.username, str(incident.pk))


def test_an_outsider_or_another_department_gets_404(client, org, incident):
    assert report(client, org.outsider, incident).status_code == 404
    assert report(client, org.other_owner, incident).status_code == 404
    assert not AuditEvent.objects.filter(action="traces.incident_report.generated").exists()


def test_json_report_is_valid_json_for_a_run_without_anything(client, org, sender):
    sender.agent.refresh_from_db()
    run, _ = runtime.run_start(credential=sender.credential, task="Nothing happened")
    data = json.loads(report(client, org.owner, run).content)
    assert data["decisions"] == [] and data["proof"]["decision_seals"] == []
