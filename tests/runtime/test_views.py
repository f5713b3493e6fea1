"""The runtime console: credentials on the agent page, the decision explorer, delegations."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.runtime.counters import counter_store
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.models import AgentCredential, Budget, Decision, Delegation

from ..clients import console_client as client_for
from .conftest import start_run

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"tth_agent_[0-9a-f]{8}_[A-Za-z0-9_\-]{16,}")


def issue_url(setup: Any) -> str:
    return reverse("runtime:credential-issue", args=[setup.agent.slug])


def cred_url(setup: Any, what: str, credential: AgentCredential | None = None) -> str:
    credential = credential or setup.credential
    return reverse(f"runtime:credential-{what}", args=[setup.agent.slug, credential.pk])


def make_decisions(setup: Any) -> tuple[Decision, Decision]:
    run, _ = start_run(setup)
    allowed = decide(
        run=run,
        request=DecisionRequest(
            action="tool.invoke", tool="crm-lookup", tool_action="read",
            arguments={"customer_id": "c-1"},
        ),
    )  # fmt: skip
    denied = decide(
        run=run,
        request=DecisionRequest(action="tool.invoke", tool="no-such-tool", tool_action="read"),
    )
    return allowed, denied


# --- credentials -----------------------------------------------------------------------------


def test_an_outsider_gets_404_on_every_credential_url(org, setup):
    client = client_for(org.outsider)
    assert client.get(setup.agent.get_absolute_url()).status_code == 404
    assert client.get(issue_url(setup)).status_code == 404
    assert client.post(issue_url(setup), {"name": "x", "environment": "prod"}).status_code == 404
    assert client.post(cred_url(setup, "rotate")).status_code == 404
    assert client.post(cred_url(setup, "revoke")).status_code == 404
    assert AgentCredential.objects.count() == 1


def test_an_owner_of_another_department_gets_404_too(org, setup):
    client = client_for(org.other_owner)
    assert client.post(cred_url(setup, "revoke")).status_code == 404
    setup.credential.refresh_from_db()
    assert setup.credential.revoked_at is None


def test_the_owner_issues_a_credential_and_sees_its_secret_only_once(org, setup):
    client = client_for(org.owner)
    response = client.post(issue_url(setup), {"name": "dev laptop", "environment": "dev"})
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    secrets = SECRET.findall(response.content.decode())
    assert len(secrets) == 1
    credential = AgentCredential.objects.get(name="dev laptop")
    assert credential.environment == "dev"
    assert secrets[0].startswith(f"tth_agent_{credential.lookup}_")

    page = client.get(setup.agent.get_absolute_url()).content.decode()
    assert secrets[0] not in page
    assert f"tth_agent_{credential.lookup}_…" in page
    assert "dev laptop" in page


def test_the_issue_form_offers_only_the_agents_environments_and_refuses_others(org, setup):
    client = client_for(org.owner)
    page = client.get(issue_url(setup)).content.decode()
    assert 'value="prod"' in page and 'value="dev"' in page and 'value="staging"' not in page
    response = client.post(issue_url(setup), {"name": "x", "environment": "staging"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not SECRET.search(response.content.decode())


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"name": "", "environment": "prod"},
        {"name": "n" * 101, "environment": "prod"},
        {"name": "nul\x00byte", "environment": "prod"},
        {"name": "ok", "environment": "p" * 5000},
    ],
)
def test_bad_issue_input_is_a_form_error_not_a_500(org, setup, data):
    response = client_for(org.owner).post(issue_url(setup), data)
    assert response.status_code == 400
    assert AgentCredential.objects.count() == 1


def test_rotating_shows_the_successor_once_and_revokes_the_old_one(org, setup):
    response = client_for(org.owner).post(cred_url(setup, "rotate"))
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    setup.credential.refresh_from_db()
    assert setup.credential.revoked_at is not None
    new = setup.credential.replaced_by
    assert new is not None and new.environment == "prod"
    assert SECRET.findall(response.content.decode())[0].startswith(f"tth_agent_{new.lookup}_")


def test_revoking_a_credential_redirects_to_the_agent_and_marks_it_revoked(org, setup):
    client = client_for(org.owner)
    response = client.post(cred_url(setup, "revoke"))
    assert response.status_code == 302 and response["Location"] == setup.agent.get_absolute_url()
    setup.credential.refresh_from_db()
    assert setup.credential.revoked_at is not None
    page = client.get(setup.agent.get_absolute_url()).content.decode()
    assert "Revoked" in page


def test_an_approver_sees_the_credentials_but_no_buttons_and_cannot_change_them(org, setup):
    client = client_for(org.approver)
    page = client.get(setup.agent.get_absolute_url()).content.decode()
    assert f"tth_agent_{setup.credential.lookup}_…" in page
    assert issue_url(setup) not in page
    assert cred_url(setup, "rotate") not in page and cred_url(setup, "revoke") not in page
    assert client.get(issue_url(setup)).status_code == 403
    assert client.post(issue_url(setup), {"name": "x", "environment": "prod"}).status_code == 403
    assert client.post(cred_url(setup, "rotate")).status_code == 403
    assert client.post(cred_url(setup, "revoke")).status_code == 403
    setup.credential.refresh_from_db()
    assert setup.credential.revoked_at is None
    assert AgentCredential.objects.count() == 1


def test_credential_urls_with_absurd_ids_are_404(org, setup):
    client = client_for(org.owner)
    url = f"/agents/{setup.agent.slug}/credentials/{10**30}/revoke/"
    assert client.post(url).status_code == 404
    assert client.get(f"/decisions/{10**30}/").status_code == 404
    assert client.post(f"/delegations/{10**30}/revoke/").status_code == 404


# --- the agent page's decisions and budgets --------------------------------------------------


def test_the_agent_page_lists_recent_decisions_with_badges_and_an_explorer_link(org, setup):
    _allowed, denied = make_decisions(setup)
    page = client_for(org.approver).get(setup.agent.get_absolute_url()).content.decode()
    assert "badge--decision-deny" in page and ">Deny<" in page
    assert "badge--decision-allow" in page and ">Allow<" in page
    assert "tool_unknown" in page
    assert f"/decisions/{denied.pk}/" in page
    assert "/decisions/?agent=claims-triage" in page


def test_the_agent_page_shows_each_budget_with_used_and_remaining(org, setup):
    Budget.objects.create(
        name="Daily calls", kind="tool_calls", scope="agent_day", agent=setup.agent, limit=10
    )
    Budget.objects.create(
        name="Run tokens", kind="tokens", scope="run", agent=setup.agent, limit=5000
    )
    Budget.objects.create(
        name="Claims spend", kind="spend", scope="department_month", department=org.claims,
        limit=100,
    )  # fmt: skip
    Budget.objects.create(
        name="Payments spend", kind="spend", scope="department_month", department=org.payments,
        limit=100,
    )  # fmt: skip
    make_decisions(setup)  # one allowed tool call charges the daily budget
    page = client_for(org.owner).get(setup.agent.get_absolute_url()).content.decode()
    assert "Daily calls" in page and "1 used of 10" in page and "9 remaining" in page
    assert "Run tokens" in page and "per run" in page
    assert "Claims spend" in page and "0 used of 100" in page
    assert "Payments spend" not in page
    assert "<meter" in page


def test_the_agent_page_says_so_when_the_budget_store_is_down(org, setup, settings):
    Budget.objects.create(
        name="Daily calls", kind="tool_calls", scope="agent_day", agent=setup.agent, limit=10
    )
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    counter_store.cache_clear()
    try:
        response = client_for(org.owner).get(setup.agent.get_absolute_url())
    finally:
        counter_store.cache_clear()
    assert response.status_code == 200
    page = response.content.decode()
    assert "Budget store unreachable" in page and "Daily calls" in page


# --- decision explorer -----------------------------------------------------------------------


def test_the_explorer_filters_by_disposition_and_by_reason(org, setup):
    allowed, denied = make_decisions(setup)
    client = client_for(org.auditor)
    detail = reverse("runtime:decision-detail", args=[denied.pk])
    page = client.get(reverse("runtime:decision-list")).content.decode()
    assert detail in page and reverse("runtime:decision-detail", args=[allowed.pk]) in page

    page = client.get(reverse("runtime:decision-list"), {"disposition": "deny"}).content.decode()
    assert detail in page
    assert reverse("runtime:decision-detail", args=[allowed.pk]) not in page

    page = client.get(reverse("runtime:decision-list"), {"reason": "allowed"}).content.decode()
    assert detail not in page
    assert reverse("runtime:decision-detail", args=[allowed.pk]) in page


def test_the_explorer_filters_by_agent_target_and_time(org, setup):
    allowed, denied = make_decisions(setup)
    url = reverse("runtime:decision-list")
    client = client_for(org.owner)
    page = client.get(url, {"tool": "no-such-tool"}).content.decode()
    assert f"/decisions/{denied.pk}/" in page and f"/decisions/{allowed.pk}/" not in page
    later = (timezone.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert "No decision matches" in client.get(url, {"since": later}).content.decode()
    page = client.get(url, {"until": later, "agent": "claims-triage"}).content.decode()
    assert f"/decisions/{denied.pk}/" in page


@pytest.mark.parametrize(
    "params",
    [
        {"disposition": "maybe"},
        {"reason": "<script>"},
        {"agent": "someone-elses"},
        {"since": "yesterday", "until": "99999-01-01"},
        {"since": "2026-02-01", "until": "2026-01-01"},
        {"tool": "x" * 5000},
        {"page": "-1"},
        {"page": "9" * 40},
    ],
)
def test_bad_explorer_filters_are_shown_as_errors_not_a_500(org, setup, params):
    make_decisions(setup)
    response = client_for(org.owner).get(reverse("runtime:decision-list"), params)
    assert response.status_code == 200


def test_the_explorer_shows_only_decisions_of_agents_in_scope(org, setup):
    _allowed, denied = make_decisions(setup)
    other = client_for(org.other_owner)
    assert f"/decisions/{denied.pk}/" not in other.get("/decisions/").content.decode()
    assert other.get(reverse("runtime:decision-detail", args=[denied.pk])).status_code == 404
    outsider = client_for(org.outsider)
    assert outsider.get("/decisions/").status_code == 403
    assert outsider.get(reverse("runtime:decision-detail", args=[denied.pk])).status_code == 403


def test_a_decision_detail_shows_reasoning_policies_and_run(org, setup):
    _allowed, denied = make_decisions(setup)
    response = client_for(org.approver).get(reverse("runtime:decision-detail", args=[denied.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert denied.reasoning.split(".")[0] in page.replace("&#x27;", "'")
    assert str(denied.run_id) in page and "tool_unknown" in page


def test_the_explorer_pages_by_100(org, setup):
    run, _ = start_run(setup)
    now = timezone.now()
    Decision.objects.bulk_create(
        Decision(
            created_at=now,
            run=run,
            agent=setup.agent,
            environment="prod",
            action="model.call",
            target="gpt-x",
            disposition="allow",
            reasons=["allowed"],
            reasoning="ok",
        )
        for _ in range(150)
    )
    client = client_for(org.owner)
    first = client.get("/decisions/").content.decode()
    assert "Page 1 of 2" in first and first.count("/decisions/") >= 100
    assert "Page 2 of 2" in client.get("/decisions/", {"page": 2}).content.decode()


# --- delegations -----------------------------------------------------------------------------


def test_a_person_grants_and_revokes_a_delegation(org, setup):
    client = client_for(org.approver)
    expires = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        reverse("runtime:delegation-list"),
        {"agent": "claims-triage", "tools": ["crm-lookup"], "expires_at": expires, "note": "leave"},
    )
    assert response.status_code == 302
    delegation = Delegation.objects.get(person=org.approver)
    assert delegation.tools == ["crm-lookup"] and delegation.note == "leave"
    page = client.get(reverse("runtime:delegation-list")).content.decode()
    assert "Claims triage" in page and "crm-lookup" in page and "Active" in page

    response = client.post(reverse("runtime:delegation-revoke", args=[delegation.pk]))
    assert response.status_code == 302
    delegation.refresh_from_db()
    assert delegation.revoked_at is not None
    assert "Revoked" in client.get(reverse("runtime:delegation-list")).content.decode()


def test_someone_else_cannot_revoke_my_delegation(org, setup):
    client = client_for(org.approver)
    expires = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    client.post(
        reverse("runtime:delegation-list"), {"agent": "claims-triage", "expires_at": expires}
    )
    delegation = Delegation.objects.get()
    response = client_for(org.owner).post(
        reverse("runtime:delegation-revoke", args=[delegation.pk])
    )
    assert response.status_code == 404
    delegation.refresh_from_db()
    assert delegation.revoked_at is None


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"agent": "claims-triage", "expires_at": "2001-01-01T00:00"},
        {"agent": "claims-triage", "expires_at": "2999-01-01T00:00"},
        {"agent": "claims-triage", "expires_at": "not a date"},
        {"agent": "no-such-agent", "expires_at": "2030-01-01T00:00"},
        {"agent": "claims-triage", "expires_at": "2030-01-01T00:00", "tools": ["nope"]},
        {"agent": "claims-triage", "expires_at": "2030-01-01T00:00", "note": "n" * 301},
    ],
)
def test_bad_delegation_input_is_a_form_error_not_a_500(org, setup, data):
    response = client_for(org.approver).post(reverse("runtime:delegation-list"), data)
    assert response.status_code == 400
    assert "form-errors" in response.content.decode()
    assert not Delegation.objects.exists()


def test_a_delegation_to_a_tool_the_agent_lacks_names_it(org, setup):
    from ..factories import make_tool

    make_tool("mailer", actions=["send"])
    other = setup.agent.__class__.objects.get(pk=setup.agent.pk)
    from apps.registry import services as registry

    helper = registry.agent_create(
        actor=org.owner,
        data={
            "name": "Helper", "slug": "helper", "mission": "Help.", "department": org.claims,
            "environments": ["prod"], "status": "active", "autonomy_level": 1,
        },
    )  # fmt: skip
    registry.grant_set(
        actor=org.owner,
        agent=helper,
        tool=setup.lookup.__class__.objects.get(slug="mailer"),
        actions=["send"],
        environments=["prod"],
    )
    expires = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    response = client_for(org.approver).post(
        reverse("runtime:delegation-list"),
        {"agent": other.slug, "tools": ["mailer"], "expires_at": expires},
    )
    assert response.status_code == 400
    assert "holds no grant of mailer" in response.content.decode()


def test_the_nav_links_decisions_and_delegations_for_role_holders_only(org, setup):
    page = client_for(org.approver).get("/").content.decode()
    assert 'href="/decisions/"' in page and 'href="/delegations/"' in page
    page = client_for(org.outsider).get("/").content.decode()
    assert 'href="/decisions/"' not in page
