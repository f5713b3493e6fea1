"""The budgets API: list, create, change, delete; one error shape for bad input, never a 500."""

from __future__ import annotations

import json

import pytest

from apps.runtime import services
from apps.runtime.models import Budget

from ..clients import api_client
from ..factories import make_agent

URL = "/api/v1/budgets/"


def _post(user, body, *, raw: bool = False):
    data = body if raw else json.dumps(body)
    return api_client(user).post(URL, data, content_type="application/json")


def _body(**extra):
    return {"name": "Tokens per run", "kind": "tokens", "scope": "run", "limit": 50000, **extra}


@pytest.fixture
def agent(org):
    return make_agent(org.claims, org.owner, "claims-bot")


def test_owner_creates_lists_changes_and_deletes_a_budget(org, agent):
    created = _post(org.owner, _body(agent="claims-bot", edge="degrade", degrade_to_model="m-1"))
    assert created.status_code == 201, created.json()
    budget = created.json()
    assert budget["slug"] == "claims-bot-tokens-per-run" and budget["limit"] == "50000"
    assert budget["url"].endswith(f"/api/v1/budgets/{budget['slug']}/")
    listed = api_client(org.owner).get(URL, {"agent": "claims-bot"}).json()
    assert [b["slug"] for b in listed["results"]] == [budget["slug"]]
    client = api_client(org.owner)
    patched = client.patch(budget["url"], {"limit": "75000", "enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["limit"] == "75000"
    assert patched.json()["enabled"] is False
    assert client.delete(budget["url"]).status_code == 204
    assert client.get(budget["url"]).status_code == 404


def test_finance_creates_a_department_budget(org):
    response = _post(
        org.finance, _body(kind="spend", scope="department_month", department="claims", limit=12.5)
    )
    assert response.status_code == 201, response.json()
    assert response.json()["department"] == "claims" and response.json()["limit"] == "12.5"


def test_outsiders_get_404_and_owners_of_other_agents_403(org, agent):
    budget = services.budget_create(
        actor=org.owner, agent=agent, name="n", kind="tokens", scope="run", limit=5
    )
    detail = f"{URL}{budget.slug}/"
    assert api_client(org.outsider).get(detail).status_code == 404
    assert api_client(org.other_owner).get(detail).status_code == 404  # another department
    assert api_client(org.other_owner).patch(detail, {"limit": 1}, format="json").status_code == 404
    assert api_client(org.other_owner).delete(detail).status_code == 404
    assert _post(org.other_owner, _body(agent="claims-bot")).status_code == 404
    assert _post(org.outsider, _body(agent="claims-bot")).status_code == 404
    approver = api_client(org.approver)  # reads claims agents, owns none
    assert approver.get(detail).status_code == 200
    refused = approver.patch(detail, {"limit": 1}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    assert _post(org.approver, _body(agent="claims-bot")).status_code == 403
    owner_dept = _post(
        org.owner, _body(kind="spend", scope="department_month", department="claims")
    )
    assert owner_dept.status_code == 403
    assert _post(org.owner, _body(scope="department_month", department="nope")).status_code == 404
    assert api_client(org.outsider).get(URL).json()["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_body(agent="claims-bot", limit=0), "limit"),
        (_body(agent="claims-bot", limit=-1), "limit"),
        (_body(agent="claims-bot", limit="1e999"), "limit"),
        (_body(agent="claims-bot", limit=10**30), "limit"),
        (_body(agent="claims-bot", limit=[1]), "limit"),
        (_body(agent="claims-bot", limit=None), "limit"),
        (_body(agent="claims-bot", limit=True), "limit"),
        (_body(agent="claims-bot", kind="unicorns"), "kind"),
        (_body(agent="claims-bot", name="x" * 101), "name"),
        (_body(agent="claims-bot", name=5), "name"),
        (_body(agent="claims-bot", slug="Not A Slug"), "slug"),
        (_body(agent="claims-bot", edge="degrade"), "degrade_to_model"),
        (_body(agent="claims-bot", degrade_to_model="m" * 101), "degrade_to_model"),
        (_body(agent="claims-bot", colour="red"), "colour"),
        (_body(), "agent"),
        (_body(agent="claims-bot", scope="department_month"), "department"),
        (_body(agent=["claims-bot"]), "agent"),
        (_body(agent="claims-bot", enabled="maybe"), "enabled"),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(org, agent, body, field):
    response = _post(org.owner, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["message"]
    assert field in error["details"], error
    assert not Budget.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '{"name": "a\\u0000b", "kind": "tokens", "scope": "run", "limit": 5}',
        "[1, 2, 3]",
        '"just a string"',
        '{"limit": 1e999}',
        "[" * 100 + "]" * 100,
    ],
)
def test_hostile_bodies_are_4xx_never_500(org, agent, raw):
    response = _post(org.owner, raw, raw=True)
    assert 400 <= response.status_code < 500
    assert "error" in response.json()


def test_an_oversized_body_is_a_413(org, agent, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = _post(org.owner, _body(agent="claims-bot", name="x" * 5000))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_patch_refuses_fixed_fields_with_a_hint_and_bad_lookups_are_4xx(org, agent):
    budget = services.budget_create(
        actor=org.owner, agent=agent, name="n", kind="tokens", scope="run", limit=5
    )
    client = api_client(org.owner)
    detail = f"{URL}{budget.slug}/"
    response = client.patch(detail, {"kind": "spend"}, format="json")
    assert response.status_code == 400
    assert "create a new budget" in response.json()["error"]["details"]["kind"][0]
    assert client.patch(detail, {"limit": "abc"}, format="json").status_code == 400
    assert client.get(f"{URL}{'9' * 80}/").status_code == 404
    assert client.get(URL, {"limit": 10**9}).status_code == 400
    assert client.get(URL, {"scope": "forever"}).status_code == 400


def test_filters_narrow_the_list(org, agent):
    services.budget_create(
        actor=org.owner, agent=agent, name="a", kind="tokens", scope="run", limit=5
    )
    services.budget_create(
        actor=org.admin, department=org.claims, name="d", kind="spend", scope="department_month",
        limit=5, enabled=False,
    )  # fmt: skip
    client = api_client(org.admin)
    assert client.get(URL).json()["count"] == 2
    assert client.get(URL, {"scope": "department_month"}).json()["count"] == 1
    assert client.get(URL, {"enabled": "false"}).json()["count"] == 1
    assert client.get(URL, {"department": "claims"}).json()["count"] == 2
    assert client.get(URL, {"kind": "tokens"}).json()["count"] == 1


def test_the_budget_endpoints_are_in_the_openapi_schema(org):
    schema = api_client(org.admin).get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/budgets/"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/budgets/{slug}/"])
    assert "400" in paths["/api/v1/budgets/"]["post"]["responses"]
    assert "Budget" in schema["components"]["schemas"]
