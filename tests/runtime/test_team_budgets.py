"""Monthly budgets over a team (scope team_month): who sets and reads them, what a sound one is,
and that they flow through the services, the API, the Budgets page and manifests as department
budgets do."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

import pytest
from django.db import IntegrityError, transaction
from django.http import Http404

from apps.accounts.models import Team, User
from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry.manifests import ManifestError, manifest_apply, manifest_export
from apps.registry.models import CHANGE
from apps.runtime import selectors, services
from apps.runtime.models import Budget

from ..clients import api_client, console_client
from ..factories import make_agent, make_team, make_user

URL = "/api/v1/budgets/"
TEAM_SPEND = {"name": "Ops spend", "kind": "spend", "scope": "team_month", "limit": 400}


@dataclass
class People:
    claims_finance: User  # finance for the claims department
    payments_finance: User  # finance for payments only: claims is outside their scope
    payments_finance_claims_auditor: User  # reads claims (auditor there), sets payments' budgets
    ops_finance: User  # finance held on the team itself, not on its department
    ops_member: User  # an approver in the claims-ops team, no role in the department
    payments_ops: Team


@pytest.fixture
def people(org) -> People:
    return People(
        claims_finance=make_user("fcl", ("finance", org.claims)),
        payments_finance=make_user("fpa", ("finance", org.payments)),
        payments_finance_claims_auditor=make_user(
            "fpx", ("finance", org.payments), ("auditor", org.claims)
        ),
        ops_finance=make_user("fop", ("finance", org.claims_ops)),
        ops_member=make_user("tom", ("approver", org.claims_ops)),
        payments_ops=make_team(org.payments, "payments-ops", name="Payments Ops"),
    )


def _team_budget(actor, team, **extra):
    return services.budget_create(actor=actor, team=team, **{**TEAM_SPEND, **extra})


# --- services --------------------------------------------------------------------------------


def test_finance_creates_a_team_budget_over_no_department_with_an_audit_event(org):
    budget = _team_budget(org.finance, org.claims_ops)
    assert budget.slug == "claims-ops-ops-spend"
    assert (budget.scope, budget.team, budget.agent, budget.department) == (
        "team_month",
        org.claims_ops,
        None,
        None,
    )
    assert budget.over_name == "Claims Ops" and budget.team_slug == "claims-ops"
    event = AuditEvent.objects.get(action="runtime.budget.created")
    assert event.target_repr == budget.slug
    assert event.after["team"] == "claims-ops" and event.after["department"] is None
    assert event.after["scope"] == "team_month" and event.after["limit"] == "400"


def test_team_budgets_are_for_admins_and_finance_over_the_teams_department(org, people):
    refused = (
        org.owner, org.approver, org.auditor, org.outsider, people.payments_finance,
        people.ops_finance, people.ops_member,
    )  # fmt: skip
    for actor in refused:
        with pytest.raises(NotPermitted):
            _team_budget(actor, org.claims_ops)
    assert _team_budget(people.claims_finance, org.claims_ops).team == org.claims_ops
    assert _team_budget(org.admin, people.payments_ops, name="Payments").team == people.payments_ops
    assert services.can_change_team_budgets(people.claims_finance, org.claims_ops)
    assert not services.can_change_team_budgets(people.claims_finance, people.payments_ops)


@pytest.mark.parametrize(
    ("owner", "changes", "field", "message"),
    [
        ({}, {}, "team", "A team_month budget is over a team: name it."),
        ({"team": True, "agent": True}, {}, "agent", "over a whole team, not an agent"),
        ({"team": True, "department": True}, {}, "department", "leave the department out"),
        ({"team": True, "department": True}, {"scope": "department_month"}, "team", "team_month"),
        ({"team": True, "agent": True}, {"scope": "agent_month"}, "team", "Only a team_month"),
        ({"team": True}, {"kind": "wall_time", "limit": 60}, "scope", "per run"),
        ({"team": True}, {"kind": "tokens", "limit": "1.5"}, "limit", "whole number"),
    ],
)
def test_unsound_team_budgets_are_refused_with_a_message(org, owner, changes, field, message):
    over = {
        "team": org.claims_ops if owner.get("team") else None,
        "agent": make_agent(org.claims, org.owner) if owner.get("agent") else None,
        "department": org.claims if owner.get("department") else None,
    }
    with pytest.raises(ApplicationError) as excinfo:
        services.budget_create(actor=org.admin, **over, **{**TEAM_SPEND, **changes})
    assert message in " ".join(excinfo.value.details[field])
    assert not Budget.objects.exists()


def test_team_budgets_take_the_kinds_and_edges_a_department_budget_takes(org):
    tokens = _team_budget(
        org.admin, org.claims_ops, name="Tokens", kind="tokens", limit=10**6, edge="degrade",
        degrade_to_model="gpt-4.1-mini",
    )  # fmt: skip
    calls = _team_budget(org.admin, org.claims_ops, name="Calls", kind="tool_calls", limit=900)
    assert (tokens.edge, calls.kind) == ("degrade", "tool_calls")


def test_the_database_refuses_a_team_budget_over_anything_else_too(org):
    agent = make_agent(org.claims, org.owner)
    for fields in (
        {"scope": "team_month", "team": org.claims_ops, "department": org.claims},
        {"scope": "team_month", "team": org.claims_ops, "agent": agent},
        {"scope": "team_month"},
        {"scope": "department_month", "department": org.claims, "team": org.claims_ops},
        {"scope": "run", "agent": agent, "team": org.claims_ops},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Budget.objects.create(name="x", kind="spend", limit=1, **fields)


def test_finance_changes_a_team_budget_but_never_its_team(org, people):
    budget = _team_budget(org.finance, org.claims_ops)
    updated = services.budget_update(
        actor=people.claims_finance, budget=budget, data={"limit": "450.5", "team": "claims-ops"}
    )
    assert updated.limit_text == "450.5"
    event = AuditEvent.objects.get(action="runtime.budget.updated")
    assert event.before["team"] == event.after["team"] == "claims-ops"
    with pytest.raises(ApplicationError, match="team cannot change"):
        services.budget_update(actor=org.finance, budget=budget, data={"team": "payments-ops"})
    for actor in (people.payments_finance, org.owner, people.ops_member):
        with pytest.raises(NotPermitted):
            services.budget_update(actor=actor, budget=budget, data={"limit": 1})
        with pytest.raises(NotPermitted):
            services.budget_delete(actor=actor, budget=budget)
    services.budget_delete(actor=people.claims_finance, budget=budget)
    assert not Budget.objects.exists()
    assert AuditEvent.objects.get(action="runtime.budget.deleted").before["team"] == "claims-ops"


def test_a_team_budget_is_read_by_its_departments_readers_and_nobody_else(org, people):
    budget = _team_budget(org.admin, org.claims_ops)
    readers = (
        org.owner, org.approver, org.finance, org.auditor, people.claims_finance,
        people.ops_member, people.ops_finance, people.payments_finance_claims_auditor,
    )  # fmt: skip
    for user in readers:
        assert list(selectors.budget_list(user=user)) == [budget], user
        assert selectors.budget_get(user=user, slug=budget.slug) == budget
    for user in (org.outsider, org.other_owner, people.payments_finance):
        assert not selectors.budget_list(user=user).exists(), user
        with pytest.raises(Http404):
            selectors.budget_get(user=user, slug=budget.slug)
    changers = {org.admin, org.finance, people.claims_finance}
    for user in (*readers, org.admin, org.outsider, people.payments_finance_claims_auditor):
        allowed = Budget.objects.for_user(user, CHANGE).filter(pk=budget.pk).exists()
        assert allowed == (user in changers), user


def test_an_agent_of_the_team_counts_the_team_budget_among_its_own(org):
    in_team = make_agent(org.claims, org.owner, "ops-bot", team=org.claims_ops)
    elsewhere = make_agent(org.claims, org.owner, "claims-bot")
    team = _team_budget(org.admin, org.claims_ops)
    department = services.budget_create(
        actor=org.admin, department=org.claims, name="Claims", kind="spend",
        scope="department_month", limit=900,
    )  # fmt: skip
    assert set(selectors.agent_budgets(agent=in_team)) == {team, department}
    assert set(selectors.agent_budgets(agent=elsewhere)) == {department}
    assert set(selectors.budget_list(user=org.owner, agent="ops-bot")) == {team, department}
    assert set(selectors.budget_list(user=org.owner, agent="claims-bot")) == {department}
    assert set(selectors.budget_list(user=org.owner, team="claims-ops")) == {team}
    assert set(selectors.budget_list(user=org.owner, department="claims")) == {team, department}


# --- the API ---------------------------------------------------------------------------------


def _post(user, **body):
    return api_client(user).post(
        URL,
        json.dumps({**TEAM_SPEND, "team": "claims-ops", **body}),
        content_type="application/json",
    )


def test_finance_creates_a_team_budget_through_the_api(org, people):
    response = _post(people.claims_finance, limit=12.5)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["scope"], body["team"], body["department"], body["agent"]) == (
        "team_month",
        "claims-ops",
        None,
        None,
    )
    assert body["limit"] == "12.5" and body["url"].endswith(f"/api/v1/budgets/{body['slug']}/")
    member = api_client(people.ops_member)
    assert member.get(body["url"]).json()["team"] == "claims-ops"
    assert [b["slug"] for b in member.get(URL, {"team": "claims-ops"}).json()["results"]] == [
        body["slug"]
    ]
    assert member.get(URL, {"department": "claims"}).json()["count"] == 1
    assert member.get(URL, {"scope": "team_month"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"team": None}, "team", "name it"),
        ({"agent": "claims-bot"}, "agent", "not an agent"),
        ({"department": "claims"}, "department", "leave the department out"),
        ({"scope": "department_month", "department": "claims"}, "team", "team_month"),
        ({"team": ["claims-ops"]}, "team", ""),
    ],
)
def test_unsound_team_budgets_are_a_400_with_the_reason(org, body, field, message):
    make_agent(org.claims, org.owner, "claims-bot")
    payload = {**TEAM_SPEND, "team": "claims-ops", **body}
    payload = {k: v for k, v in payload.items() if v is not None}  # team None: left out
    response = api_client(org.admin).post(URL, payload, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"]
    assert message in " ".join(error["details"][field])
    assert not Budget.objects.exists()


def test_an_unknown_or_unreadable_team_is_a_404_and_a_readable_one_not_yours_a_403(org, people):
    unknown = _post(org.admin, team="nowhere")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["details"] == {"team": ["No such team."]}
    assert _post(people.payments_finance).status_code == 404  # claims is outside their scope
    assert _post(org.outsider).status_code == 404
    for user in (people.payments_finance_claims_auditor, org.owner, people.ops_member):
        refused = _post(user)
        assert refused.status_code == 403, user
        assert refused.json()["error"]["code"] == "permission_denied"
    assert not Budget.objects.exists()


def test_outsiders_get_404_and_readers_cannot_change_a_team_budget(org, people):
    budget = _team_budget(org.admin, org.claims_ops)
    detail = f"{URL}{budget.slug}/"
    for user in (org.outsider, org.other_owner, people.payments_finance):
        client = api_client(user)
        assert client.get(detail).status_code == 404
        assert client.patch(detail, {"limit": 1}, format="json").status_code == 404
        assert client.delete(detail).status_code == 404
    member = api_client(people.ops_member)
    assert member.get(detail).status_code == 200
    assert member.patch(detail, {"limit": 1}, format="json").status_code == 403
    assert member.delete(detail).status_code == 403
    finance = api_client(people.claims_finance)
    moved = finance.patch(detail, {"team": "payments-ops"}, format="json")
    assert moved.status_code == 400
    assert "create a new budget" in moved.json()["error"]["details"]["team"][0]
    assert finance.patch(detail, {"limit": 500}, format="json").json()["limit"] == "500"
    assert finance.delete(detail).status_code == 204


def test_the_schema_documents_the_team_field(org):
    schema = api_client(org.admin).get("/api/schema/", {"format": "json"}).json()
    components = schema["components"]["schemas"]
    assert "team_month" in components["BudgetCreateRequest"]["properties"]["team"]["description"]
    assert "team" in components["Budget"]["properties"]
    scopes = json.dumps(components)
    assert "team_month" in scopes


# --- the console -----------------------------------------------------------------------------


def test_finance_sets_a_team_budget_on_the_budgets_page(org, people):
    make_team(org.claims, "claims-intake", name="Claims Intake")
    finance = console_client(people.claims_finance)
    form = finance.get("/department-budgets/").content.decode()
    assert 'name="team"' in form and "None: the whole department" in form
    assert "Claims / Claims Ops" in form and "Claims / Claims Intake" in form
    assert "payments-ops" not in form  # only teams of departments they may set budgets for
    created = finance.post(
        "/department-budgets/",
        {"department": "claims", "team": "claims-ops", "name": "Ops tokens", "kind": "tokens",
         "limit": "90000", "edge": "stop", "degrade_to_model": ""},
    )  # fmt: skip
    assert created.status_code == 302, created.content.decode()
    assert created["Location"].endswith("/department-budgets/#team-claims-ops")
    budget = Budget.objects.get()
    assert (budget.scope, budget.team, budget.department) == ("team_month", org.claims_ops, None)
    page = finance.get("/department-budgets/").content.decode()
    section = page[page.index('id="department-claims"') :]
    assert 'id="team-claims-ops"' in section and "Team Claims Ops" in section
    assert "Ops tokens" in section and "0 used of 90000" in section
    assert f"/budgets/{budget.slug}/edit/" in section
    assert "No department budgets yet" not in page


def test_a_department_budget_and_its_teams_budgets_share_the_departments_section(org):
    department = services.budget_create(
        actor=org.admin, department=org.claims, name="Claims spend", kind="spend",
        scope="department_month", limit=900,
    )  # fmt: skip
    team = _team_budget(org.admin, org.claims_ops)
    page = console_client(org.owner).get("/department-budgets/").content.decode()
    start = page.index('id="department-claims"')
    assert start < page.index(department.name) < page.index("Team Claims Ops")
    assert page.index("Team Claims Ops") < page.index(team.name)
    assert f"/budgets/{team.slug}/edit/" not in page  # an owner reads it, cannot change it
    assert "Set a department budget" not in page


def test_a_team_of_another_department_is_refused_by_the_form(org, people):
    response = console_client(org.finance).post(
        "/department-budgets/",
        {"department": "claims", "team": "payments-ops", "name": "Mixed", "kind": "spend",
         "limit": "10", "edge": "stop"},
    )  # fmt: skip
    assert response.status_code == 400
    assert "Payments Ops is a team of Payments, not Claims" in response.content.decode()
    assert not Budget.objects.exists()
    unknown = console_client(org.finance).post(
        "/department-budgets/",
        {"department": "claims", "team": "nowhere", "name": "x", "kind": "spend", "limit": "10",
         "edge": "stop"},
    )  # fmt: skip
    assert unknown.status_code == 400 and not Budget.objects.exists()


def test_only_the_departments_readers_see_a_team_budget_and_only_finance_changes_it(org, people):
    budget = _team_budget(org.admin, org.claims_ops)
    member_page = console_client(people.ops_member).get("/department-budgets/").content.decode()
    assert "Ops spend" in member_page and "Team Claims Ops" in member_page
    assert console_client(people.ops_member).post("/department-budgets/", {}).status_code == 403
    other = console_client(org.other_owner).get("/department-budgets/").content.decode()
    assert "Ops spend" not in other
    edit = f"/budgets/{budget.slug}/edit/"
    for user in (org.outsider, org.other_owner, people.payments_finance):
        assert console_client(user).get(edit).status_code == 404
        assert console_client(user).post(f"/budgets/{budget.slug}/delete/").status_code == 404
    assert console_client(people.ops_member).get(edit).status_code == 403
    page = console_client(people.claims_finance).get(edit)
    assert page.status_code == 200 and b"Over Claims Ops" in page.content
    assert b"The team, per month" in page.content
    saved = console_client(people.claims_finance).post(
        edit, {"name": "Ops spend", "limit": "420", "edge": "stop", "enabled": "on"}
    )
    assert saved.status_code == 302 and saved["Location"].endswith("#team-claims-ops")
    budget.refresh_from_db()
    assert budget.limit == 420 and budget.team == org.claims_ops


def test_an_agents_page_lists_its_teams_budget_and_its_form_offers_no_team_scope(org):
    agent = make_agent(org.claims, org.owner, "ops-bot", team=org.claims_ops)
    _team_budget(org.admin, org.claims_ops, name="Ops monthly spend")
    client = console_client(org.owner)
    page = client.get(agent.get_absolute_url()).content.decode()
    assert "Ops monthly spend" in page and "The team, per month" in page
    form = client.get("/agents/ops-bot/budgets/new/").content.decode()
    assert "team_month" not in form and "department_month" not in form


# --- manifests -------------------------------------------------------------------------------

TEAM_MANIFEST = textwrap.dedent(
    """\
    apiVersion: tether/v1
    kind: Budget
    metadata: {slug: claims-ops-spend, name: Claims Ops spend}
    spec:
      team: claims-ops
      kind: spend
      scope: team_month
      limit: 400.25
      edge: ask
    """
)


def _manifest_problems(excinfo) -> dict[str, str]:
    return {p["path"]: p["message"] for p in excinfo.value.details["problems"]}


def test_a_manifest_applies_a_team_budget_once_and_exports_it_byte_stable(org):
    result = manifest_apply(actor=org.finance, text=TEAM_MANIFEST)
    assert [(c.kind, c.action) for c in result.changes] == [("Budget", "create")]
    budget = Budget.objects.get()
    assert (budget.team, budget.scope, budget.limit_text) == (
        org.claims_ops,
        "team_month",
        "400.25",
    )
    assert manifest_apply(actor=org.finance, text=TEAM_MANIFEST).counts()["unchanged"] == 1
    exported = manifest_export(user=org.admin)
    assert "team: claims-ops" in exported and "scope: team_month" in exported
    again = manifest_apply(actor=org.admin, text=exported)
    assert again.counts()["create"] == again.counts()["update"] == 0
    assert manifest_export(user=org.admin) == exported
    assert "claims-ops-spend" in manifest_export(user=org.owner)
    assert "claims-ops-spend" not in manifest_export(user=org.other_owner)


def test_a_manifests_team_budget_problems_are_reported_by_path(org):
    cases = {
        "team: claims-ops": ("team: nowhere", "spec.team", "No team 'nowhere'"),
        "scope: team_month": (
            "scope: team_month\n  agent: claims-bot",
            "spec.agent",
            "not an agent",
        ),
        "edge: ask": ("edge: ask\n  department: claims", "spec.department", "leave the department"),
    }
    make_agent(org.claims, org.owner, "claims-bot")
    for old, (new, path, message) in cases.items():
        with pytest.raises(ManifestError) as excinfo:
            manifest_apply(actor=org.admin, text=TEAM_MANIFEST.replace(old, new))
        assert message in _manifest_problems(excinfo)[path]
    missing = TEAM_MANIFEST.replace("  team: claims-ops\n", "")
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=missing)
    assert "name it" in _manifest_problems(excinfo)["spec.team"]
    assert not Budget.objects.exists()


def test_a_manifests_team_budget_needs_finance_over_the_department(org, people):
    for actor in (org.owner, people.payments_finance_claims_auditor):
        with pytest.raises(ManifestError) as excinfo:
            manifest_apply(actor=actor, text=TEAM_MANIFEST)
        assert excinfo.value.http_status == 403
    assert manifest_apply(actor=people.claims_finance, text=TEAM_MANIFEST).applied
