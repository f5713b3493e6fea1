"""The policy API: /api/v1/policies/ — one error shape, unknown fields refused, admins write."""

from __future__ import annotations

from typing import Any

import pytest

from apps.policy.models import Policy

from ..clients import api_client

pytestmark = pytest.mark.django_db

FORBID = (
    'forbid(principal, action == Action::"tool.invoke", resource == Tool::"refund-issue")\n'
    "  when { context has amount && context.amount > 1000 };"
)
BODY = {"name": "Large refunds", "slug": "large-refunds", "text": FORBID}


def simulate_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "principal": "claims-triage",
        "action": "tool.invoke",
        "resource": "refund-issue",
        "context": {"environment": "prod", "tool_action": "issue", "amount": 5000},
    }
    body.update(extra)
    return body


@pytest.fixture
def admin(org: Any) -> Any:
    return api_client(org.admin)


def test_an_admin_creates_reads_lists_and_patches_a_policy(admin: Any) -> None:
    created = admin.post(
        "/api/v1/policies/", {**BODY, "comment": "Per the refund SOP"}, format="json"
    )
    assert created.status_code == 201, created.data
    body = created.json()
    assert body["url"] == "http://testserver/api/v1/policies/large-refunds/"
    assert body["statements"] == [{"id": "large-refunds", "effect": "forbid", "line": 1}]
    assert (body["current_version"], body["enabled"], body["created_by"]) == (1, True, "ada")
    assert admin.get("/api/v1/policies/").json()["results"][0]["slug"] == "large-refunds"
    patched = admin.patch(
        "/api/v1/policies/large-refunds/",
        {"text": FORBID.replace("1000", "500"), "comment": "Lower"},
        format="json",
    )
    assert patched.status_code == 200 and patched.json()["current_version"] == 2
    versions = admin.get("/api/v1/policies/large-refunds/versions/").json()
    assert [(v["number"], v["comment"]) for v in versions["results"]] == [
        (2, "Lower"),
        (1, "Per the refund SOP"),
    ]
    one = admin.get(versions["results"][1]["url"])
    assert one.status_code == 200 and one.json()["text"] == FORBID
    disabled = admin.patch("/api/v1/policies/large-refunds/", {"enabled": False}, format="json")
    assert disabled.json()["enabled"] is False and disabled.json()["current_version"] == 2


def test_invalid_text_is_a_400_that_says_where(admin: Any) -> None:
    response = admin.post(
        "/api/v1/policies/", {**BODY, "text": "forbid(principal, action, resource) when { 1 + };"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["details"]["text"] == ["Line 1, column 48: Syntax error: unexpected token `}`."]
    assert error["details"]["problems"] == [
        {"line": 1, "column": 48, "message": "Syntax error: unexpected token `}`."}
    ]
    assert not Policy.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**BODY, "colour": "red"}, "colour"),
        ({**BODY, "statements": []}, "statements"),
        ({**BODY, "text": 42}, "text"),
        ({**BODY, "slug": "Not a slug"}, "slug"),
        ({**BODY, "slug": "simulate"}, "slug"),
        ({**BODY, "text": "x" * 20_001}, "text"),
    ],
)
def test_bad_bodies_are_refused_by_field(admin: Any, body: dict[str, Any], field: str) -> None:
    response = admin.post("/api/v1/policies/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_malformed_json_and_nul_characters_are_400s(admin: Any) -> None:
    bad = admin.post("/api/v1/policies/", "{not json", content_type="application/json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "parse_error"
    nul = admin.post("/api/v1/policies/", {**BODY, "text": "permit\u0000"}, format="json")
    assert nul.status_code == 400


@pytest.mark.parametrize("persona", ["owner", "approver", "finance", "auditor"])
def test_only_admins_write(org: Any, admin: Any, persona: str) -> None:
    admin.post("/api/v1/policies/", BODY, format="json")
    client = api_client(getattr(org, persona))
    assert (
        client.post("/api/v1/policies/", {**BODY, "slug": "mine"}, format="json").status_code == 403
    )
    patch = client.patch("/api/v1/policies/large-refunds/", {"enabled": False}, format="json")
    assert patch.status_code == (403 if persona == "auditor" else 404)
    assert Policy.objects.get().enabled


@pytest.mark.parametrize("persona", ["owner", "finance", "outsider"])
def test_non_readers_get_403_for_the_list_and_404_for_a_policy(
    org: Any, admin: Any, persona: str
) -> None:
    admin.post("/api/v1/policies/", BODY, format="json")
    client = api_client(getattr(org, persona))
    listing = client.get("/api/v1/policies/")
    assert listing.status_code == 403 and listing.json()["error"]["code"] == "permission_denied"
    assert client.get("/api/v1/policies/large-refunds/").status_code == 404
    assert client.get("/api/v1/policies/large-refunds/versions/").status_code == 404
    assert (
        client.post("/api/v1/policies/simulate", simulate_body(), format="json").status_code == 403
    )


def test_simulate_names_the_forbid_that_decided(org: Any, registry: Any, admin: Any) -> None:
    admin.post("/api/v1/policies/", BODY, format="json")
    response = api_client(org.auditor).post(
        "/api/v1/policies/simulate", simulate_body(), format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["decision"], body["policies"], body["errors"]) == ("deny", ["large-refunds"], [])
    assert body["fired"][0]["origin"] == "admin" and body["fired"][0]["effect"] == "forbid"
    assert body["context"]["risk_class"] == "high"  # filled in from the tool
    small = simulate_body(context={"environment": "prod", "tool_action": "issue", "amount": 10})
    allowed = admin.post("/api/v1/policies/simulate", small, format="json").json()
    assert allowed["decision"] == "allow"
    assert allowed["policies"] == ["registry.grant.claims-triage.refund-issue"]


def test_simulate_tries_a_draft_in_place_of_the_saved_policy(
    org: Any, registry: Any, admin: Any
) -> None:
    admin.post("/api/v1/policies/", BODY, format="json")
    looser = simulate_body(draft_text=FORBID.replace("1000", "9000"), draft_policy="large-refunds")
    assert (
        admin.post("/api/v1/policies/simulate", looser, format="json").json()["decision"] == "allow"
    )
    extra = simulate_body(
        context={"environment": "prod", "tool_action": "issue"},
        draft_text='forbid(principal, action, resource) when { context.environment == "prod" };',
    )
    body = admin.post("/api/v1/policies/simulate", extra, format="json").json()
    assert (body["decision"], body["policies"], body["draft_statements"]) == ("deny", ["draft"], 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (simulate_body(principal="nobody"), "principal"),
        (simulate_body(resource_type="Model"), "resource_type"),
        (simulate_body(action="tool.delete"), "action"),
        (simulate_body(context={"tool_action": "issue"}), "context"),
        (simulate_body(context={"environment": "prod", "amount": "lots"}), "context"),
        (simulate_body(context={"environment": "prod", "colour": "red"}), "context"),
        (simulate_body(draft_text="forbid(;"), "draft_text"),
    ],
)
def test_simulate_refuses_bad_requests_by_field(
    registry: Any, admin: Any, body: dict[str, Any], field: str
) -> None:
    response = admin.post("/api/v1/policies/simulate", body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["details"]


def test_the_openapi_schema_documents_the_policy_endpoints(admin: Any) -> None:
    schema = admin.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/policies/",
        "/api/v1/policies/simulate",
        "/api/v1/policies/{slug}/versions/",
    ):
        assert path in text
