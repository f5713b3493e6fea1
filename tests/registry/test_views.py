"""The registry console: pages, permissions, and forms that never 500 on hostile input."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.registry import services
from apps.registry.constants import AgentStatus, MemoryClass, RiskClass
from apps.registry.models import Agent, MemoryStore, Tool, ToolGrant

from ..clients import console_client as client_for
from ..factories import make_agent, make_tool

pytestmark = pytest.mark.django_db


def title_of(response: Any) -> str:
    match = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S)
    assert match, "every page has a <title>"
    return match.group(1).strip()


def agent_form_data(org: Any, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Claims triage",
        "slug": "claims-triage",
        "mission": "Sort incoming claims by urgency.",
        "department": org.claims.slug,
        "team": "",
        "status": "draft",
        "autonomy_level": "1",
        "environments": ["dev", "prod"],
        "failure_posture": "fail_closed",
        "providers": "openai, azure-openai",
        "tags": "claims, triage",
        "parameters": '{"temperature": 0.2}',
        "instructions": "Be careful.\nAsk when unsure.",
    }
    data.update(extra)
    return data


def tool_form_data(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "CRM lookup",
        "slug": "crm-lookup",
        "description": "Looks up a customer record.",
        "risk_class": "low",
        "actions": "read, update",
        "input_schema": '{"type": "object", "properties": {"id": {"type": "string"}}}',
        "output_schema": '{"type": "object"}',
        "data_classes": ["internal", "pii"],
        "reversible": "on",
    }
    data.update(extra)
    return data


def errors_of(response: Any) -> dict[str, list[str]]:
    form = response.context["form"]
    return {field: [str(e) for e in errors] for field, errors in form.errors.items()}


# --- home ------------------------------------------------------------------------------------


def test_home_of_a_fresh_org_says_what_to_do_next(org):
    response = client_for(org.owner).get(reverse("home"))
    assert response.status_code == 200
    assert title_of(response) == "Overview · Tether"
    body = response.content.decode()
    assert "No agents registered yet" in body
    assert "Register your first agent" in body
    assert "manage.py apply" in body


def test_home_answers_what_runs_who_owns_it_what_it_touches_and_what_is_unsafe(org):
    payout = make_tool("payout", risk_class=RiskClass.CRITICAL, approval_required=False)
    lookup = make_tool("crm-lookup")
    triage = make_agent(org.claims, org.owner, "claims-triage", name="Claims triage")
    ToolGrant.objects.create(agent=triage, tool=payout, actions=["read"], environments=["prod"])
    ToolGrant.objects.create(agent=triage, tool=lookup, actions=["read"], environments=["dev"])
    make_agent(org.claims, None, "orphan-bot", name="Orphan bot")

    body = client_for(org.auditor).get(reverse("home")).content.decode()

    assert "Claims triage" in body and "alice" in body  # active, with its owner
    assert "Payout" in body and "Crm Lookup" in body  # the tools it can touch
    assert "Orphan bot" in body  # unowned
    assert "Critical tools without an approval gate" in body
    assert reverse("registry:tool-detail", args=["payout"]) in body


def test_outsider_gets_the_no_role_page_and_whom_to_ask(org):
    response = client_for(org.outsider).get(reverse("home"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "You have no role in Tether yet" in body
    assert "ada" in body  # the admin to ask
    listing = client_for(org.outsider).get(reverse("registry:agent-list"))
    assert listing.status_code == 403
    assert "You have no role in Tether yet" in listing.content.decode()


def test_anonymous_visitors_are_sent_to_log_in(org):
    response = Client().get(reverse("registry:agent-list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- agent list ------------------------------------------------------------------------------


def test_agent_list_filters_by_owner_unowned_department_status_risk_environment_and_search(org):
    critical = make_tool("payout", risk_class=RiskClass.CRITICAL)
    low = make_tool("lookup")
    a = make_agent(org.claims, org.owner, "claims-triage", business_process="First notice of loss")
    b = make_agent(org.claims, None, "orphan", status=AgentStatus.SUSPENDED, environments=["dev"])
    c = make_agent(org.payments, org.other_owner, "refunds")
    ToolGrant.objects.create(agent=a, tool=critical, actions=["read"], environments=["prod"])
    ToolGrant.objects.create(agent=a, tool=low, actions=["read"], environments=["prod"])
    ToolGrant.objects.create(agent=c, tool=low, actions=["read"], environments=["prod"])
    client = client_for(org.admin)

    def slugs(**params: str) -> set[str]:
        response = client.get(reverse("registry:agent-list"), params)
        assert response.status_code == 200
        return {agent.slug for agent in response.context["agents"]}

    assert slugs() == {a.slug, b.slug, c.slug}
    assert slugs(owner="none") == {b.slug}
    assert slugs(owner="alice") == {a.slug}
    assert slugs(department="payments") == {c.slug}
    assert slugs(status="suspended") == {b.slug}
    assert slugs(risk="critical") == {a.slug}
    assert slugs(risk="low") == {a.slug, c.slug}
    assert slugs(environment="prod") == {a.slug, c.slug}
    assert slugs(q="notice of loss") == {a.slug}


def test_agent_list_shows_the_highest_risk_even_when_filtering_by_a_lower_one(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    for slug, risk in (("payout", RiskClass.CRITICAL), ("lookup", RiskClass.LOW)):
        ToolGrant.objects.create(
            agent=agent,
            tool=make_tool(slug, risk_class=risk),
            actions=["read"],
            environments=["dev"],
        )
    response = client_for(org.owner).get(reverse("registry:agent-list"), {"risk": "low"})
    assert "badge--risk-critical" in response.content.decode()


def test_agent_list_htmx_request_gets_only_the_table_fragment(org):
    make_agent(org.claims, org.owner, "claims-triage")
    client = client_for(org.owner)
    response = client.get(reverse("registry:agent-list"), {"q": "claims"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and "claims-triage" in body
    assert "HX-Request" in response["Vary"]
    restore = client.get(
        reverse("registry:agent-list"),
        HTTP_HX_REQUEST="true",
        HTTP_HX_HISTORY_RESTORE_REQUEST="true",
    )
    assert "<html" in restore.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"status": "<script>alert(1)</script>"},
        {"owner": "x" * 5000},
        {"risk": ["low", "critical"]},
        {"q": "x" * 5000},
        {"page": "-1"},
        {"page": "9" * 40},
        {"environment": "\x00"},
    ],
)
def test_agent_list_answers_hostile_filters_without_error(org, params):
    make_agent(org.claims, org.owner, "claims-triage")
    response = client_for(org.owner).get(reverse("registry:agent-list"), params)
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in response.content.decode()


def test_agent_list_stays_one_page_at_two_hundred_agents(org):
    Agent.objects.bulk_create(
        Agent(name=f"Agent {n:03}", slug=f"agent-{n:03}", mission="m", department=org.claims)
        for n in range(200)
    )
    response = client_for(org.admin).get(reverse("registry:agent-list"))
    assert response.status_code == 200
    assert len(response.context["agents"]) == 200
    assert "200 agents" in response.content.decode()


# --- agent detail and permissions ------------------------------------------------------------


def test_outsider_gets_404_for_an_agent_and_everything_under_it(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    tool = make_tool("lookup")
    ToolGrant.objects.create(agent=agent, tool=tool, actions=["read"], environments=["dev"])
    client = client_for(org.outsider)
    for name in ("agent-detail", "agent-edit", "agent-versions", "grant-create", "binding-create"):
        response = client.get(reverse(f"registry:{name}", args=[agent.slug]))
        assert response.status_code == 404, name
        assert "claims-triage" not in response.content.decode()
    removal = client.post(reverse("registry:grant-remove", args=[agent.slug, tool.slug]))
    assert removal.status_code == 404
    assert agent.grants.exists()
    assert client.get(tool.get_absolute_url()).status_code == 404


def test_owner_of_another_department_gets_404_for_an_agent_they_cannot_see(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    response = client_for(org.other_owner).get(agent.get_absolute_url())
    assert response.status_code == 404
    assert title_of(response) == "Not found · Tether"


def test_owner_cannot_edit_another_owners_agent(org):
    mine = make_agent(org.payments, org.other_owner, "refunds")
    client = client_for(org.owner)
    for url in (
        reverse("registry:agent-edit", args=[mine.slug]),
        reverse("registry:grant-create", args=[mine.slug]),
    ):
        assert client.get(url).status_code in (403, 404)
        assert client.post(url, {"name": "Mine now"}).status_code in (403, 404)
    mine.refresh_from_db()
    assert mine.name != "Mine now"


def test_org_wide_owner_reads_but_cannot_edit_someone_elses_agent(org):
    from ..factories import make_user

    reader = make_user("olga", ("owner", None))
    agent = make_agent(org.claims, org.owner, "claims-triage")
    client = client_for(reader)
    detail = client.get(agent.get_absolute_url())
    assert detail.status_code == 200
    assert reverse("registry:agent-edit", args=[agent.slug]) not in detail.content.decode()
    edit = client.post(reverse("registry:agent-edit", args=[agent.slug]), agent_form_data(org))
    assert edit.status_code == 403


@pytest.mark.parametrize("persona", ["approver", "finance", "auditor"])
def test_readers_see_the_agent_but_no_edit_buttons(org, persona):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    ToolGrant.objects.create(
        agent=agent, tool=make_tool("lookup"), actions=["read"], environments=["dev"]
    )
    response = client_for(getattr(org, persona)).get(agent.get_absolute_url())
    body = response.content.decode()
    assert response.status_code == 200
    assert title_of(response) == f"{agent.name} · Agents · Tether"
    assert "Edit agent" not in body and "Grant a tool" not in body and "Revoke" not in body
    assert reverse("registry:agent-edit", args=[agent.slug]) not in body
    refused = client_for(getattr(org, persona)).post(
        reverse("registry:grant-remove", args=[agent.slug, "lookup"])
    )
    assert refused.status_code == 403
    assert agent.grants.count() == 1


def test_owner_sees_edit_buttons_on_their_agent(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    body = client_for(org.owner).get(agent.get_absolute_url()).content.decode()
    assert reverse("registry:agent-edit", args=[agent.slug]) in body
    assert reverse("registry:grant-create", args=[agent.slug]) in body


def test_agent_detail_answers_the_registry_questions(org):
    agent = make_agent(
        org.claims, org.owner, "claims-triage", name="Claims triage",
        business_process="First notice of loss", model_family="gpt-4.1", default_model="gpt-4.1-mini",
        providers=["openai"], shutdown_action="Pause the queue", rollback_action="Revert to v1",
        tags=["claims"], instructions="Secret sauce", knowledge_base_version="kb-7",
        parameters={"temperature": 0.2},
    )  # fmt: skip
    services.record_version(agent=agent, actor=services.Actor.system(), summary="Registered")
    body = client_for(org.owner).get(agent.get_absolute_url()).content.decode()
    for expected in (
        "Triage incoming claims.", "alice", "Claims", "First notice of loss", "gpt-4.1-mini",
        "openai", "L1 · Assisted", "prod", "Fail closed", "Pause the queue", "Revert to v1",
        "claims", "kb-7", "temperature", "Secret sauce", "v1",
    ):  # fmt: skip
        assert expected in body, expected
    assert '<details class="instructions">' in body  # collapsed by default


# --- agent forms -----------------------------------------------------------------------------


def test_owner_registers_an_agent_through_the_form(org):
    client = client_for(org.owner)
    assert client.get(reverse("registry:agent-create")).status_code == 200
    response = client.post(reverse("registry:agent-create"), agent_form_data(org))
    assert response.status_code == 302
    agent = Agent.objects.get(slug="claims-triage")
    assert response["Location"] == agent.get_absolute_url()
    assert agent.owner == org.owner
    assert agent.providers == ["openai", "azure-openai"]
    assert agent.tags == ["claims", "triage"]
    assert agent.parameters == {"temperature": 0.2}
    assert agent.environments == ["dev", "prod"]
    assert [v.number for v in agent.versions.all()] == [1]


def test_department_choices_are_limited_to_where_the_user_may_register(org):
    form = client_for(org.owner).get(reverse("registry:agent-create")).context["form"]
    assert [d.slug for d in form.fields["department"].queryset] == ["claims"]
    admin_form = client_for(org.admin).get(reverse("registry:agent-create")).context["form"]
    assert {d.slug for d in admin_form.fields["department"].queryset} == {"claims", "payments"}
    assert "owner" in admin_form.fields and "owner" not in form.fields


def test_owner_cannot_register_in_another_department(org):
    response = client_for(org.owner).post(
        reverse("registry:agent-create"), agent_form_data(org, department="payments")
    )
    assert response.status_code == 400
    assert "department" in errors_of(response)
    assert not Agent.objects.exists()


def test_approver_cannot_open_the_register_form(org):
    assert client_for(org.approver).get(reverse("registry:agent-create")).status_code == 403
    response = client_for(org.approver).post(reverse("registry:agent-create"), agent_form_data(org))
    assert response.status_code == 403
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"name": "n" * 5000}, "name", "at most 100 characters"),
        ({"slug": "Not A Slug!"}, "slug", "lowercase"),
        ({"slug": "s" * 500}, "slug", "at most 60"),
        ({"slug": "new"}, "slug", "reserved"),
        ({"mission": ""}, "mission", "required"),
        ({"parameters": "{not json"}, "parameters", "Not valid JSON"),
        ({"parameters": "[1, 2]"}, "parameters", "JSON object"),
        ({"parameters": '"just a string"'}, "parameters", "JSON object"),
        ({"parameters": '{"t": NaN}'}, "parameters", "NaN is not allowed"),
        ({"parameters": '{"t": 1e999}'}, "parameters", "too large"),
        ({"parameters": '{"t": "\\u0000"}'}, "parameters", "NUL"),
        ({"parameters": '{"t": "\\ud800"}'}, "parameters", "surrogate"),
        ({"parameters": "[" * 40 + "]" * 40}, "parameters", "nested"),
        ({"parameters": "[" * 5000 + "]" * 5000}, "parameters", "nested"),
        ({"autonomy_level": "high"}, "autonomy_level", "valid choice"),
        ({"autonomy_level": "99"}, "autonomy_level", "valid choice"),
        ({"department": "no-such-dept"}, "department", "valid choice"),
        ({"department": ["claims", "payments"]}, "department", ""),
        ({"environments": ["moon"]}, "environments", "valid choice"),
        ({"status": "running"}, "status", "valid choice"),
        ({"tags": "Bad Tag"}, "tags", "not valid"),
        ({"tags": ",".join(f"t{n}" for n in range(30))}, "tags", "At most 20"),
        ({"providers": "p" * 61}, "providers", "1-60"),
        ({"name": "bad\x00name"}, "name", "Null characters"),
    ],
)
def test_agent_form_turns_hostile_input_into_field_errors(org, changes, field, message):
    response = client_for(org.owner).post(
        reverse("registry:agent-create"), agent_form_data(org, **changes)
    )
    assert response.status_code == 400
    errors = errors_of(response)
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors
    assert not Agent.objects.exists()


def test_agent_form_says_where_bad_json_broke(org):
    response = client_for(org.owner).post(
        reverse("registry:agent-create"), agent_form_data(org, parameters='{\n  "a": 1,\n}')
    )
    assert "line 3" in errors_of(response)["parameters"][0]


def test_duplicate_slug_is_a_form_error(org):
    make_agent(org.payments, org.other_owner, "claims-triage")
    response = client_for(org.owner).post(reverse("registry:agent-create"), agent_form_data(org))
    assert response.status_code == 400
    assert "slug" in errors_of(response)
    assert Agent.objects.count() == 1


def test_team_of_another_department_is_a_form_error(org):
    from ..factories import make_team

    elsewhere = make_team(org.payments, "refund-ops")
    response = client_for(org.admin).post(
        reverse("registry:agent-create"), agent_form_data(org, team=elsewhere.slug)
    )
    assert response.status_code == 400
    assert "team" in errors_of(response)


def test_editing_instructions_writes_a_version_and_the_diff_shows_it(org):
    client = client_for(org.owner)
    client.post(reverse("registry:agent-create"), agent_form_data(org))
    agent = Agent.objects.get(slug="claims-triage")
    form = client.get(reverse("registry:agent-edit", args=[agent.slug])).context["form"]
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        instructions="Be careful.\nEscalate fraud.",
        change_summary="Escalate fraud",
        providers="openai, azure-openai",
        tags="claims, triage",
        parameters='{"temperature": 0.2}',
    )
    response = client.post(reverse("registry:agent-edit", args=[agent.slug]), data)
    assert response.status_code == 302, errors_of(response)
    assert [v.number for v in agent.versions.order_by("number")] == [1, 2]
    assert agent.versions.get(number=2).change_summary == "Escalate fraud"

    history = client.get(reverse("registry:agent-versions", args=[agent.slug]))
    assert "Escalate fraud" in history.content.decode()
    diff = client.get(reverse("registry:agent-diff", args=[agent.slug]), {"a": 2, "b": 1})
    body = diff.content.decode()
    assert diff.status_code == 200
    assert title_of(diff) == "v1 → v2 · Claims triage · Tether"
    assert 'line--add"><span class="visually-hidden">added: </span>Escalate fraud' in body
    assert 'line--del"><span class="visually-hidden">removed: </span>Ask when unsure.' in body


def test_edit_that_strands_grants_is_a_form_error(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    ToolGrant.objects.create(
        agent=agent, tool=make_tool("lookup"), actions=["read"], environments=["prod"]
    )
    client = client_for(org.owner)
    data = {
        k: v
        for k, v in client.get(reverse("registry:agent-edit", args=[agent.slug]))
        .context["form"]
        .initial.items()
        if v is not None
    }
    data.update(environments=["dev"], parameters="{}", providers="", tags="")
    response = client.post(reverse("registry:agent-edit", args=[agent.slug]), data)
    assert response.status_code == 400
    assert "Still used by grants: lookup (prod)" in " ".join(errors_of(response)["environments"])
    agent.refresh_from_db()
    assert agent.environments == ["dev", "prod"]


def test_admin_can_leave_an_agent_unowned(org):
    response = client_for(org.admin).post(
        reverse("registry:agent-create"), agent_form_data(org, owner="")
    )
    assert response.status_code == 302
    assert Agent.objects.get(slug="claims-triage").owner is None


# --- grants and memory -----------------------------------------------------------------------


def test_owner_grants_a_tool_through_the_form(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    make_tool("crm-lookup", actions=["read", "update", "close"])
    client = client_for(org.owner)
    picker = client.get(reverse("registry:grant-create", args=[agent.slug]), {"tool": "crm-lookup"})
    assert 'value="close"' in picker.content.decode()
    response = client.post(
        reverse("registry:grant-create", args=[agent.slug]),
        {
            "tool": "crm-lookup", "actions": ["read"], "environments": ["prod"],
            "constraints": '{"max_amount": 500}', "expires_at": "2999-01-01T00:00",
        },
    )  # fmt: skip
    assert response.status_code == 302
    grant = agent.grants.get()
    assert grant.actions == ["read"] and grant.constraints == {"max_amount": 500}
    assert agent.versions.count() == 1  # the grant wrote a version


def test_grant_in_an_environment_the_agent_may_not_use_is_a_form_error(org):
    agent = make_agent(org.claims, org.owner, "claims-triage", environments=["dev"])
    make_tool("crm-lookup")
    response = client_for(org.owner).post(
        reverse("registry:grant-create", args=[agent.slug]),
        {"tool": "crm-lookup", "actions": ["read"], "environments": ["prod"]},
    )
    assert response.status_code == 400
    errors = errors_of(response)
    assert "may not run in prod" in " ".join(errors["environments"])
    assert not agent.grants.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"actions": ["delete"]}, "actions"),
        ({"actions": []}, "actions"),
        ({"tool": "no-such-tool"}, "tool"),
        ({"tool": "x" * 5000}, "tool"),
        ({"constraints": "{oops"}, "constraints"),
        ({"constraints": "[1]"}, "constraints"),
        ({"constraints": '{"k": "' + "v" * 40000 + '"}'}, "constraints"),
        ({"expires_at": "yesterday"}, "expires_at"),
        ({"expires_at": "2001-01-01T00:00"}, "expires_at"),
        ({"expires_at": "99999-01-01T00:00"}, "expires_at"),
        ({"environments": ["moon"]}, "environments"),
        ({"environments": []}, "environments"),
    ],
)
def test_grant_form_turns_hostile_input_into_field_errors(org, changes, field):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    make_tool("crm-lookup")
    data = {"tool": "crm-lookup", "actions": ["read"], "environments": ["dev"]}
    data.update(changes)
    response = client_for(org.owner).post(reverse("registry:grant-create", args=[agent.slug]), data)
    assert response.status_code == 400
    assert field in errors_of(response), errors_of(response)
    assert not agent.grants.exists()


def test_owner_edits_and_revokes_a_grant(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    tool = make_tool("crm-lookup")
    services.grant_set(
        actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["dev"]
    )
    client = client_for(org.owner)
    url = reverse("registry:grant-edit", args=[agent.slug, tool.slug])
    response = client.post(url, {"actions": ["read", "update"], "environments": ["dev", "prod"]})
    assert response.status_code == 302
    assert agent.grants.get().actions == ["read", "update"]
    assert (
        client.get(reverse("registry:grant-remove", args=[agent.slug, tool.slug])).status_code
        == 405
    )
    client.post(reverse("registry:grant-remove", args=[agent.slug, tool.slug]))
    assert not agent.grants.exists()
    assert client.get(url).status_code == 404


def test_memory_binding_add_refuse_writes_to_forbidden_store_and_remove(org):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    notes = MemoryStore.objects.create(name="Notes", slug="notes", store_class=MemoryClass.DURABLE)
    MemoryStore.objects.create(name="Vault", slug="vault", store_class=MemoryClass.FORBIDDEN)
    client = client_for(org.owner)
    url = reverse("registry:binding-create", args=[agent.slug])
    assert client.post(url, {"store": "notes", "access": "read_write"}).status_code == 302
    refused = client.post(url, {"store": "vault", "access": "read_write"})
    assert refused.status_code == 400
    assert "read-only" in " ".join(errors_of(refused)["access"])
    assert client.post(url, {"store": "notes", "access": "admin"}).status_code == 400
    client.post(reverse("registry:binding-remove", args=[agent.slug, notes.slug]))
    assert not agent.memory_bindings.exists()


# --- versions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [{}, {"a": "abc", "b": "1"}, {"a": "0", "b": "1"}, {"a": "9" * 50, "b": "1"}]
)
def test_diff_with_bad_version_numbers_is_a_400(org, params):
    agent = make_agent(org.claims, org.owner, "claims-triage")
    response = client_for(org.owner).get(reverse("registry:agent-diff", args=[agent.slug]), params)
    assert response.status_code == 400


def test_diff_of_a_version_that_does_not_exist_is_a_404(org):
    agent = services.agent_create(
        actor=org.owner, data={"name": "A", "slug": "a", "mission": "m", "department": org.claims}
    )
    response = client_for(org.owner).get(
        reverse("registry:agent-diff", args=[agent.slug]), {"a": 1, "b": 7}
    )
    assert response.status_code == 404


# --- tools -----------------------------------------------------------------------------------


def test_owner_registers_a_tool_and_reads_its_contract(org):
    client = client_for(org.owner)
    response = client.post(reverse("registry:tool-create"), tool_form_data())
    assert response.status_code == 302
    tool = Tool.objects.get(slug="crm-lookup")
    assert tool.actions == ["read", "update"]
    assert sorted(dc.slug for dc in tool.data_classes.all()) == ["internal", "pii"]
    body = client.get(tool.get_absolute_url()).content.decode()
    assert "What it must never do" in body and "&quot;properties&quot;" in body


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"input_schema": '{"type": "nonsense"}'}, "input_schema", "Invalid JSON Schema at"),
        ({"input_schema": '{"properties": {"a": {"type": 5}}}'}, "input_schema", "properties/a"),
        ({"output_schema": "[]"}, "output_schema", "JSON object"),
        ({"output_schema": "{"}, "output_schema", "Not valid JSON"),
        ({"input_schema": '{"not": ' * 200 + "{}" + "}" * 200}, "input_schema", "nested"),
        ({"actions": ""}, "actions", "required"),
        ({"actions": "Read!"}, "actions", "not valid"),
        ({"risk_class": "apocalyptic"}, "risk_class", "valid choice"),
        ({"rate_limit_per_minute": "99999999999999"}, "rate_limit_per_minute", "less than"),
        ({"rate_limit_per_minute": "-3"}, "rate_limit_per_minute", "greater than"),
        ({"rate_limit_per_minute": "ten"}, "rate_limit_per_minute", "whole number"),
        ({"data_classes": ["top-secret"]}, "data_classes", "valid choice"),
        ({"name": "n" * 101}, "name", "at most 100"),
    ],
)
def test_tool_form_turns_hostile_input_into_field_errors(org, changes, field, message):
    response = client_for(org.owner).post(
        reverse("registry:tool-create"), tool_form_data(**changes)
    )
    assert response.status_code == 400
    errors = errors_of(response)
    assert field in errors, errors
    assert message in " ".join(errors[field]), errors
    assert not Tool.objects.exists()


def test_duplicate_tool_slug_is_a_form_error(org):
    make_tool("crm-lookup")
    response = client_for(org.owner).post(reverse("registry:tool-create"), tool_form_data())
    assert response.status_code == 400
    assert "slug" in errors_of(response)


def test_only_the_tools_owner_or_an_admin_may_edit_it(org):
    tool = make_tool("crm-lookup", owner=org.other_owner)
    assert (
        client_for(org.owner).get(reverse("registry:tool-edit", args=[tool.slug])).status_code
        == 403
    )
    detail = client_for(org.owner).get(tool.get_absolute_url()).content.decode()
    assert "Edit tool" not in detail
    response = client_for(org.admin).post(
        reverse("registry:tool-edit", args=[tool.slug]),
        tool_form_data(name="CRM lookup v2", owner="bob"),
    )
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.name == "CRM lookup v2"


def test_tool_detail_lists_only_agents_the_reader_may_see(org):
    tool = make_tool("crm-lookup")
    visible = make_agent(org.claims, org.owner, "claims-triage", name="Claims triage")
    hidden = make_agent(org.payments, org.other_owner, "refunds", name="Refund bot")
    for agent in (visible, hidden):
        ToolGrant.objects.create(agent=agent, tool=tool, actions=["read"], environments=["dev"])
    body = client_for(org.approver).get(tool.get_absolute_url()).content.decode()
    assert "Claims triage" in body and "Refund bot" not in body


def test_tool_list_searches_and_filters_by_risk(org):
    make_tool("payout", risk_class=RiskClass.CRITICAL, description="Sends money")
    make_tool("lookup")
    client = client_for(org.finance)
    response = client.get(reverse("registry:tool-list"), {"risk": "critical"})
    assert [t.slug for t in response.context["tools"]] == ["payout"]
    response = client.get(reverse("registry:tool-list"), {"q": "money"})
    assert [t.slug for t in response.context["tools"]] == ["payout"]
    empty = client.get(reverse("registry:tool-list"), {"q": "nothing-like-this"})
    assert "No tool matches these filters" in empty.content.decode()


# --- memory stores ---------------------------------------------------------------------------


def test_memory_store_create_edit_and_detail_shows_who_reads_and_writes(org):
    client = client_for(org.owner)
    response = client.post(
        reverse("registry:memory-create"),
        {"name": "Case notes", "slug": "case-notes", "store_class": "durable", "retention_days": "30",
         "data_classes": ["pii"]},
    )  # fmt: skip
    assert response.status_code == 302
    store = MemoryStore.objects.get(slug="case-notes")
    agent = make_agent(org.claims, org.owner, "claims-triage", name="Claims triage")
    services.memory_binding_set(actor=org.owner, agent=agent, store=store, access="read_write")
    body = client.get(store.get_absolute_url()).content.decode()
    assert "Claims triage" in body and "Read and write" in body
    edit = client.post(
        reverse("registry:memory-edit", args=[store.slug]),
        {"name": "Case notes", "store_class": "forbidden", "retention_days": ""},
    )
    assert edit.status_code == 400
    assert "store_class" in errors_of(edit)


@pytest.mark.parametrize(
    "changes",
    [
        {"retention_days": "99999999999"},
        {"retention_days": "-1"},
        {"store_class": "infinite"},
        {"slug": "Case Notes"},
        {"name": ""},
    ],
)
def test_memory_store_form_turns_hostile_input_into_errors(org, changes):
    data = {"name": "Case notes", "slug": "case-notes", "store_class": "durable"}
    data.update(changes)
    response = client_for(org.owner).post(reverse("registry:memory-create"), data)
    assert response.status_code == 400
    assert not MemoryStore.objects.exists()


# --- every page ------------------------------------------------------------------------------


def test_every_registry_page_has_a_title_that_says_where_you_are(org):
    agent = make_agent(org.claims, org.owner, "claims-triage", name="Claims triage")
    tool = make_tool("crm-lookup", name="CRM lookup")
    store = MemoryStore.objects.create(name="Notes", slug="notes", store_class=MemoryClass.SESSION)
    client = client_for(org.owner)
    expected = {
        reverse("registry:agent-list"): "Agents · Tether",
        reverse("registry:agent-create"): "Register an agent · Agents · Tether",
        agent.get_absolute_url(): "Claims triage · Agents · Tether",
        reverse("registry:agent-edit", args=[agent.slug]): "Edit Claims triage · Agents · Tether",
        reverse("registry:agent-versions", args=[agent.slug]): "History · Claims triage · Tether",
        reverse(
            "registry:grant-create", args=[agent.slug]
        ): "Grant a tool · Claims triage · Tether",
        reverse("registry:binding-create", args=[agent.slug]): (
            "Bind a memory store · Claims triage · Tether"
        ),
        reverse("registry:tool-list"): "Tools · Tether",
        reverse("registry:tool-create"): "Register a tool · Tools · Tether",
        tool.get_absolute_url(): "CRM lookup · Tools · Tether",
        reverse("registry:memory-list"): "Memory stores · Tether",
        reverse("registry:memory-create"): "Register a memory store · Memory stores · Tether",
        store.get_absolute_url(): "Notes · Memory stores · Tether",
    }
    for url, title in expected.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert title_of(response) == title
