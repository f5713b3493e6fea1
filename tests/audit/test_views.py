"""The audit log page: admins and organisation-wide auditors read it, filtered and paginated."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from apps.audit.services import Actor, audit_record
from apps.registry import services

from ..clients import console_client as client_for
from ..factories import make_user

pytestmark = pytest.mark.django_db


def register(org: Any, slug: str) -> Any:
    return services.agent_create(
        actor=org.owner,
        data={"name": slug.title(), "slug": slug, "mission": "m", "department": org.claims},
    )


@pytest.mark.parametrize("persona", ["admin", "auditor"])
def test_admins_and_auditors_read_the_audit_log(org, persona):
    register(org, "claims-triage")
    response = client_for(getattr(org, persona)).get(reverse("audit:log"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "<title>Audit log · Tether</title>" in body
    assert "registry.agent.created" in body
    assert reverse("registry:agent-detail", args=["claims-triage"]) in body


@pytest.mark.parametrize("persona", ["owner", "approver", "finance"])
def test_other_roles_may_not_read_the_audit_log(org, persona):
    assert client_for(getattr(org, persona)).get(reverse("audit:log")).status_code == 403


def test_department_scoped_auditor_may_not_read_the_organisation_wide_log(org):
    scoped = make_user("dora", ("auditor", org.claims))
    response = client_for(scoped).get(reverse("audit:log"))
    assert response.status_code == 403
    assert "organisation-wide" in response.content.decode()


def test_outsider_gets_the_no_role_page(org):
    response = client_for(org.outsider).get(reverse("audit:log"))
    assert response.status_code == 403
    assert "You have no role in Tether yet" in response.content.decode()


def test_audit_log_filters_by_action_actor_and_target(org):
    register(org, "claims-triage")
    register(org, "fraud-watch")
    audit_record(
        actor=Actor.system("nightly"), action="accounts.token.revoked",
        target_type="personal_token", target_id=1, target_repr="CI",
    )  # fmt: skip
    client = client_for(org.auditor)

    def actions(**params: str) -> list[tuple[str, str]]:
        response = client.get(reverse("audit:log"), params)
        assert response.status_code == 200
        return [(r["event"].action, r["event"].target_repr) for r in response.context["rows"]]

    assert {a for a, _ in actions(action="registry.agent.created")} == {"registry.agent.created"}
    assert {a for a, _ in actions(action="registry.")} >= {
        "registry.agent.created", "registry.agent_version.created",
    }  # fmt: skip
    assert {a for a, _ in actions(actor="nightly")} == {"accounts.token.revoked"}
    assert {t for _, t in actions(target="fraud")} == {"fraud-watch"}
    assert {t for _, t in actions(target_type="personal_token")} == {"CI"}


def test_audit_log_shows_what_changed(org):
    agent = register(org, "claims-triage")
    services.agent_update(actor=org.owner, agent=agent, data={"mission": "Sort claims by urgency"})
    response = client_for(org.admin).get(reverse("audit:log"), {"action": "registry.agent.updated"})
    row = response.context["rows"][0]
    assert row["keys"] == ["mission"]
    assert "Sort claims by urgency" in row["after"]


@pytest.mark.parametrize(
    "params",
    [
        {"action": "x" * 5000},
        {"page": "abc"},
        {"page": "10" * 30},
        {"target": "\x00"},
        {"actor": "%"},
    ],
)
def test_audit_log_answers_hostile_filters_without_error(org, params):
    response = client_for(org.admin).get(reverse("audit:log"), params)
    assert response.status_code == 200


def test_audit_log_is_paginated(org):
    for n in range(60):
        audit_record(
            actor=Actor.system(), action="test.event", target_type="thing", target_id=n,
            target_repr=f"thing-{n}",
        )  # fmt: skip
    client = client_for(org.admin)
    first = client.get(reverse("audit:log"))
    assert len(first.context["rows"]) == 50
    assert "Page 1 of 2" in first.content.decode()
    second = client.get(reverse("audit:log"), {"page": 2})
    assert len(second.context["rows"]) >= 10
