from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.runtime import services
from apps.runtime.models import Run

from .conftest import start_run

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runtime/runs/"
DECIDE = "/api/v1/runtime/decisions/"


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_credential_starts_a_run_whose_token_asks_for_decisions(setup):
    started = bearer(setup.secret).post(RUNS, {"task": "Triage claim 7"}, format="json")
    assert started.status_code == 201, started.json()
    body = started.json()
    assert body["token"].startswith("tth_run_")
    assert body["envelope"]["tools"]["crm-lookup"]["actions"] == ["read"]
    assert body["run"]["version"] >= 1 and body["failure_posture"] == "fail_closed"
    answer = bearer(body["token"]).post(
        DECIDE,
        {
            "action": "tool.invoke",
            "tool": "crm-lookup",
            "tool_action": "read",
            "arguments": {"customer_id": "c-7"},
        },
        format="json",
    )
    assert answer.status_code == 200
    assert answer.json()["disposition"] == "allow"


def test_the_token_is_stored_hashed_and_the_credential_too(setup):
    run, token = start_run(setup)
    assert token not in str(Run.objects.filter(pk=run.pk).values().get())
    assert setup.secret not in str(setup.credential.__dict__)


def test_a_denied_step_is_an_answer_not_an_error(setup):
    _, token = start_run(setup)
    answer = bearer(token).post(DECIDE, {"action": "tool.invoke", "tool": "nope"}, format="json")
    assert answer.status_code == 200
    assert answer.json()["reasons"] == ["tool_unknown"]


def test_arguments_failing_the_schema_name_the_failing_field(setup):
    _, token = start_run(setup)
    answer = bearer(token).post(
        DECIDE,
        {
            "action": "tool.invoke",
            "tool": "crm-lookup",
            "tool_action": "read",
            "arguments": {"customer_id": 12},
        },
        format="json",
    )
    assert answer.json()["reasons"] == ["arguments_invalid"]
    assert "customer_id" in answer.json()["reasoning"]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{}", "application/json"),
    ],
)
def test_malformed_bodies_are_400_with_a_message(setup, body, content_type):
    _, token = start_run(setup)
    answer = bearer(token).post(DECIDE, body, content_type=content_type)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"]


def test_an_oversized_body_is_413(setup):
    _, token = start_run(setup)
    huge = (
        b'{"action": "tool.invoke", "tool": "x", "arguments": {"a": "' + b"x" * 3_000_000 + b'"}}'
    )
    answer = bearer(token).post(DECIDE, huge, content_type="application/json")
    assert answer.status_code == 413


def test_expired_revoked_and_malformed_tokens_are_401(setup, org):
    run, token = start_run(setup)
    assert bearer("tth_run_garbage").post(DECIDE, {}, format="json").status_code == 401
    Run.objects.filter(pk=run.pk).update(token_expires_at=timezone.now() - timedelta(seconds=1))
    assert (
        bearer(token)
        .post(DECIDE, {"action": "memory.read", "store": "x"}, format="json")
        .status_code
        == 401
    )
    assert Run.objects.get(pk=run.pk).state == "expired"

    _, token = start_run(setup)
    services.credential_revoke(actor=org.owner, credential=setup.credential)
    assert (
        bearer(token)
        .post(DECIDE, {"action": "memory.read", "store": "x"}, format="json")
        .status_code
        == 401
    )
    assert bearer(setup.secret).post(RUNS, {"task": "t"}, format="json").status_code == 401


def test_a_token_used_for_another_runs_url_is_403(setup):
    first, _ = start_run(setup)
    _, other_token = start_run(setup)
    answer = bearer(other_token).post(f"{RUNS}{first.pk}/heartbeat", format="json")
    assert answer.status_code == 403


def test_a_finished_run_token_stops_working(setup):
    run, token = start_run(setup)
    done = bearer(token).post(
        f"{RUNS}{run.pk}/finish", {"state": "finished", "outcome": "approved"}, format="json"
    )
    assert done.status_code == 200 and done.json()["state"] == "finished"
    assert bearer(token).post(f"{RUNS}{run.pk}/heartbeat", format="json").status_code == 401


def test_acting_on_behalf_of_someone_needs_their_standing_delegation(setup, org):
    refused = bearer(setup.secret).post(RUNS, {"task": "t", "on_behalf_of": "carol"}, format="json")
    assert refused.status_code == 403
    services.delegation_grant(
        person=org.approver, agent=setup.agent, expires_at=timezone.now() + timedelta(days=1)
    )
    started = bearer(setup.secret).post(RUNS, {"task": "t", "on_behalf_of": "carol"}, format="json")
    assert started.status_code == 201
    token = started.json()["token"]
    answer = bearer(token).post(
        DECIDE, {"action": "memory.read", "store": "case-notes"}, format="json"
    )
    assert answer.json()["on_behalf_of"] == "carol"


def test_owner_issues_and_revokes_credentials_and_outsiders_get_404(setup, org):
    owner = APIClient()
    owner.force_authenticate(org.owner)
    issued = owner.post(
        "/api/v1/agents/claims-triage/credentials/",
        {"environment": "prod", "name": "ci"},
        format="json",
    )
    assert issued.status_code == 201 and issued.json()["secret"].startswith("tth_agent_")
    bad_env = owner.post(
        "/api/v1/agents/claims-triage/credentials/",
        {"environment": "staging", "name": "x"},
        format="json",
    )
    assert bad_env.status_code == 400
    outsider = APIClient()
    outsider.force_authenticate(org.outsider)
    assert outsider.get("/api/v1/agents/claims-triage/credentials/").status_code == 404
    approver = APIClient()
    approver.force_authenticate(org.approver)
    refused = approver.post(
        "/api/v1/agents/claims-triage/credentials/",
        {"environment": "prod", "name": "x"},
        format="json",
    )
    assert refused.status_code == 403


def test_a_sub_agent_gets_no_wider_scope_than_its_parent(setup, org):
    from apps.registry import services as registry

    from ..factories import make_tool

    child = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Helper",
            "slug": "helper",
            "mission": "m",
            "department": org.claims,
            "environments": ["prod"],
            "status": "active",
        },
    )
    registry.grant_set(
        actor=org.owner, agent=child, tool=setup.lookup, actions=["read"], environments=["prod"]
    )
    registry.grant_set(
        actor=org.owner,
        agent=child,
        tool=make_tool("secret-db"),
        actions=["read"],
        environments=["prod"],
    )
    _, child_secret = services.credential_issue(
        actor=org.owner, agent=child, environment="prod", name="c"
    )
    parent, _ = start_run(setup)
    refused = bearer(child_secret.plaintext).post(
        RUNS, {"task": "t", "parent_run": str(parent.pk)}, format="json"
    )
    assert refused.status_code == 403  # the parent may not start it yet
    registry.agent_update(actor=org.owner, agent=setup.agent, data={"delegates_to": ["helper"]})
    started = bearer(child_secret.plaintext).post(
        RUNS, {"task": "t", "parent_run": str(parent.pk)}, format="json"
    )
    assert started.status_code == 201
    assert sorted(started.json()["envelope"]["tools"]) == ["crm-lookup"]
