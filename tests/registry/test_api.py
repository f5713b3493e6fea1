"""The registry's REST API: representations, permissions, and bad input answered with a 4xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.registry import services
from apps.registry.models import Agent, AgentVersion, MemoryStore, Tool, ToolGrant
from apps.registry.snapshots import agent_spec

from ..clients import api_client as client_for
from ..factories import make_agent, make_tool, make_user

pytestmark = pytest.mark.django_db

AGENTS = "/api/v1/agents/"


def agent_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Claims triage",
        "slug": "claims-triage",
        "mission": "Sort incoming claims by urgency.",
        "department": "claims",
        "environments": ["dev", "prod"],
        "default_model": "gpt-4.1",
        "shutdown": {"action": "Pause the intake queue.", "contact": "claims-oncall"},
        "instructions": "Be careful.\n",
    }
    body.update(extra)
    return body


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


@pytest.fixture
def agent(org: Any) -> Agent:
    return services.agent_create(
        actor=org.owner,
        data={
            "name": "Claims triage", "slug": "claims-triage", "mission": "Sort claims.",
            "department": org.claims, "environments": ["dev", "prod"], "instructions": "v1",
        },
    )  # fmt: skip


@pytest.fixture
def tool(org: Any) -> Tool:
    return make_tool("claims-db", owner=org.owner, actions=["read", "update", "close"])


# --- agents: happy paths ---------------------------------------------------------------------


def test_owner_registers_an_agent_and_gets_its_full_representation(org):
    response = client_for(org.owner).post(AGENTS, agent_body(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    agent = Agent.objects.get(slug="claims-triage")
    spec = agent_spec(agent)
    for key, value in spec.items():
        assert body[key] == value, key
    assert body["owner"] == "alice"
    assert body["shutdown"] == {
        "action": "Pause the intake queue.", "contact": "claims-oncall", "notes": ""
    }  # fmt: skip
    assert body["url"] == "http://testserver/api/v1/agents/claims-triage/"
    assert body["versions_url"] == "http://testserver/api/v1/agents/claims-triage/versions/"
    assert body["current_version"] == 1
    assert body["instructions"] == "Be careful.\n"
    assert {"name", "slug", "created_at", "updated_at", "tools", "memory"} <= set(body)


def test_agent_detail_shows_tools_and_memory_inline_with_their_urls(org, agent, tool):
    services.grant_set(
        actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["dev"]
    )
    store = MemoryStore.objects.create(name="Case notes", slug="case-notes", store_class="durable")
    services.memory_binding_set(actor=org.owner, agent=agent, store=store, access="read_write")

    body = client_for(org.approver).get(f"{AGENTS}claims-triage/").json()

    assert body["tools"] == [
        {
            "tool": "claims-db",
            "url": "http://testserver/api/v1/agents/claims-triage/tools/claims-db/",
            "tool_url": "http://testserver/api/v1/tools/claims-db/",
            "actions": ["read"],
            "environments": ["dev"],
            "constraints": {},
            "expires_at": None,
        }
    ]
    assert body["memory"] == [
        {
            "store": "case-notes",
            "url": "http://testserver/api/v1/agents/claims-triage/memory/case-notes/",
            "store_url": "http://testserver/api/v1/memory-stores/case-notes/",
            "access": "read_write",
        }
    ]
    assert body["current_version"] == 3


def test_agent_list_filters_by_owner_department_status_risk_environment_and_text(org, tool):
    make_agent(org.claims, org.owner, "claims-triage", environments=["dev"], status="draft")
    granted = make_agent(org.claims, None, "claims-payout", environments=["prod"])
    make_agent(org.payments, org.other_owner, "refunds", mission="Issues refunds.", environments=[])
    critical = make_tool("payouts", risk_class="critical")
    ToolGrant.objects.create(agent=granted, tool=critical, actions=["read"], environments=["prod"])
    client = client_for(org.finance)

    def slugs(query: str) -> list[str]:
        response = client.get(f"{AGENTS}?{query}")
        assert response.status_code == 200, response.json()
        return [a["slug"] for a in response.json()["results"]]

    assert slugs("") == ["claims-payout", "claims-triage", "refunds"]
    assert slugs("owner=alice") == ["claims-triage"]
    assert slugs("owner=none") == ["claims-payout"]
    assert slugs("department=payments") == ["refunds"]
    assert slugs("status=draft") == ["claims-triage"]
    assert slugs("risk=critical") == ["claims-payout"]
    assert slugs("environment=dev") == ["claims-triage"]
    assert slugs("q=refund") == ["refunds"]
    assert slugs("limit=1&offset=1") == ["claims-triage"]


def test_agent_list_refuses_unknown_filters_and_bad_choices(org):
    client = client_for(org.admin)

    typo = client.get(f"{AGENTS}?departmnt=claims")
    bad_choice = client.get(f"{AGENTS}?status=running")
    bad_limit = client.get(f"{AGENTS}?limit=abc")
    huge_offset = client.get(f"{AGENTS}?offset=99999999999999999999999")
    nul = client.get(f"{AGENTS}?q=a%00b")

    assert typo.status_code == 400
    assert error_of(typo)["message"] == "Unknown field(s): departmnt."
    assert bad_choice.status_code == 400
    assert "status" in error_of(bad_choice)["details"]
    assert bad_limit.status_code == 400
    assert huge_offset.status_code == 400
    assert nul.status_code == 400
    assert "q" in error_of(nul)["details"]


def test_owner_patches_some_fields_and_a_new_version_records_the_change(org, agent):
    response = client_for(org.owner).patch(
        f"{AGENTS}claims-triage/",
        {"default_model": "claude-sonnet", "shutdown": {"contact": "ops@example.com"}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["default_model"] == "claude-sonnet"
    assert body["shutdown"]["contact"] == "ops@example.com"
    assert body["mission"] == "Sort claims."
    assert body["current_version"] == 2
    agent.refresh_from_db()
    assert agent.default_model == "claude-sonnet"


def test_patch_that_only_renames_writes_no_new_version(org, agent):
    response = client_for(org.owner).patch(
        f"{AGENTS}claims-triage/", {"name": "Claims triage bot"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["current_version"] == 1


# --- agents: permissions ---------------------------------------------------------------------


def test_outsider_sees_no_agents_and_gets_404_for_one(org, agent, tool):
    client = client_for(org.outsider)

    assert client.get(AGENTS).json()["results"] == []
    for path in ("", "tools/", "memory/", "versions/", "versions/1/", "tools/claims-db/"):
        assert client.get(f"{AGENTS}claims-triage/{path}").status_code == 404, path
    patch = client.patch(f"{AGENTS}claims-triage/", {"name": "Mine"}, format="json")
    assert patch.status_code == 404
    assert error_of(patch)["code"] == "not_found"
    assert client.get("/api/v1/tools/claims-db/").status_code == 404


def test_owner_in_another_department_gets_404_not_the_agent(org, agent):
    response = client_for(org.other_owner).get(f"{AGENTS}claims-triage/")

    assert response.status_code == 404


def test_owner_cannot_patch_another_owners_agent(org, agent):
    dave = make_user("dave", ("owner", org.claims))

    response = client_for(dave).patch(f"{AGENTS}claims-triage/", {"name": "Mine"}, format="json")

    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert Agent.objects.get(slug="claims-triage").name == "Claims triage"


def test_approver_reads_but_cannot_change_or_grant(org, agent, tool):
    client = client_for(org.approver)

    assert client.get(f"{AGENTS}claims-triage/").status_code == 200
    assert client.patch(f"{AGENTS}claims-triage/", {"name": "x"}, format="json").status_code == 403
    put = client.put(
        f"{AGENTS}claims-triage/tools/claims-db/",
        {"actions": ["read"], "environments": ["dev"]},
        format="json",
    )
    assert put.status_code == 403
    assert not ToolGrant.objects.exists()


def test_owner_cannot_register_an_agent_in_another_department(org):
    response = client_for(org.owner).post(AGENTS, agent_body(department="payments"), format="json")

    assert response.status_code == 403
    assert not Agent.objects.exists()


def test_only_an_admin_names_someone_else_as_owner(org):
    refused = client_for(org.owner).post(AGENTS, agent_body(owner="bob"), format="json")
    allowed = client_for(org.admin).post(AGENTS, agent_body(owner="alice"), format="json")

    assert refused.status_code == 400
    assert "owner" in error_of(refused)["details"]
    assert allowed.status_code == 201
    assert allowed.json()["owner"] == "alice"


# --- agents: bad input -----------------------------------------------------------------------


def test_over_long_name_is_refused_naming_the_field(org):
    response = client_for(org.owner).post(AGENTS, agent_body(name="x" * 101), format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid"
    assert error["message"].startswith("name: ")
    assert "100 characters" in error["message"]


def test_unknown_fields_are_refused_at_the_top_and_in_nested_objects(org):
    client = client_for(org.owner)

    top = client.post(AGENTS, agent_body(enviroments=["dev"]), format="json")
    nested = client.post(AGENTS, agent_body(shutdown={"acton": "stop"}), format="json")
    read_only = client.post(AGENTS, agent_body(tools=[]), format="json")

    assert top.status_code == 400
    assert error_of(top)["message"] == "Unknown field(s): enviroments."
    assert error_of(top)["details"]["enviroments"] == ["Unknown field."]
    assert nested.status_code == 400
    assert error_of(nested)["message"] == "shutdown: Unknown field(s): acton."
    assert read_only.status_code == 400
    assert "/tools/" in error_of(read_only)["details"]["tools"][0]
    assert not Agent.objects.exists()


def test_unknown_fields_and_other_errors_are_reported_together(org):
    response = client_for(org.owner).post(
        AGENTS, agent_body(colour="blue", name="x" * 200), format="json"
    )

    details = error_of(response)["details"]
    assert "colour" in details
    assert "name" in details


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("environments", "prod"),
        ("environments", ["moon"]),
        ("autonomy_level", "high"),
        ("autonomy_level", 9),
        ("name", 123),
        ("name", ["a"]),
        ("parameters", [1, 2]),
        ("tags", "a,b"),
        ("department", {"slug": "claims"}),
        ("department", "no-such-department"),
        ("owner", 42),
        ("shutdown", "stop it"),
        ("status", "running"),
        ("slug", "Not A Slug!"),
    ],
)
def test_wrong_types_are_refused_naming_the_field(org, field, value):
    response = client_for(org.owner).post(AGENTS, agent_body(**{field: value}), format="json")

    assert response.status_code == 400, response.json()
    assert field in error_of(response)["details"]


def test_model_rules_the_serializer_cannot_see_are_400s(org):
    bad_tag = client_for(org.owner).post(AGENTS, agent_body(tags=["Bad Tag"]), format="json")
    wrong_team = client_for(org.admin).post(
        AGENTS, agent_body(department="payments", team="claims-ops"), format="json"
    )

    assert bad_tag.status_code == 400
    assert "tags" in error_of(bad_tag)["details"]
    assert wrong_team.status_code == 400
    assert "team" in error_of(wrong_team)["details"]
    assert not Agent.objects.exists()


def test_duplicate_agent_slug_is_refused(org, agent):
    response = client_for(org.owner).post(AGENTS, agent_body(), format="json")

    assert response.status_code == 400
    assert "slug" in error_of(response)["details"]
    assert Agent.objects.count() == 1


def test_renaming_a_slug_onto_another_agents_slug_is_refused(org, agent):
    make_agent(org.claims, org.owner, "claims-payout")

    response = client_for(org.owner).patch(
        f"{AGENTS}claims-payout/", {"slug": "claims-triage"}, format="json"
    )

    assert response.status_code == 400
    assert "slug" in error_of(response)["details"]


def test_narrowing_environments_under_a_grant_is_refused(org, agent, tool):
    services.grant_set(
        actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["prod"]
    )

    response = client_for(org.owner).patch(
        f"{AGENTS}claims-triage/", {"environments": ["dev"]}, format="json"
    )

    assert response.status_code == 400
    assert "claims-db (prod)" in error_of(response)["message"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from([*sorted(agent_body()), "owner", "team", "tags", "parameters", "x"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3),
            max_leaves=5,
        ),
    )
)
def test_random_json_bodies_never_cause_a_server_error(org, body):
    response = client_for(org.owner).post(
        AGENTS, json.dumps(body, allow_nan=True), content_type="application/json"
    )

    assert response.status_code < 500, (body, response.content)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(garbage=st.binary(max_size=200))
def test_random_bytes_never_cause_a_server_error(org, garbage):
    response = client_for(org.owner).post(AGENTS, garbage, content_type="application/json")

    assert response.status_code in (201, 400), response.content


@pytest.mark.parametrize(
    "payload",
    [
        '{"name": "a\\u0000b"}',
        '{"name": "\\ud800"}',
        '{"parameters": {"x": 1e999}}',
        '{"parameters": {"k\\u0000": 1}}',
        "[" * 100_000,
        '{"parameters": ' + '{"a": ' * 200 + "1" + "}" * 201,
    ],
    ids=["nul", "lone-surrogate", "infinite-number", "nul-in-key", "deep-garbage", "deep-object"],
)
def test_json_the_database_cannot_store_is_a_400(org, payload):
    response = client_for(org.owner).post(AGENTS, payload, content_type="application/json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "parse_error"


# --- tool grants -----------------------------------------------------------------------------


def test_owner_grants_changes_and_revokes_a_tool(org, agent, tool):
    client = client_for(org.owner)
    url = f"{AGENTS}claims-triage/tools/claims-db/"

    created = client.put(
        url,
        {"actions": ["read"], "environments": ["dev"], "constraints": {"max_rows": 100}},
        format="json",
    )
    changed = client.put(
        url,
        {"actions": ["read", "update"], "environments": ["dev", "prod"],
         "expires_at": "2999-01-01T00:00:00Z"},
        format="json",
    )  # fmt: skip
    listed = client.get(f"{AGENTS}claims-triage/tools/")
    revoked = client.delete(url)

    assert created.status_code == 201, created.json()
    assert created.json()["constraints"] == {"max_rows": 100}
    assert changed.status_code == 200
    assert changed.json()["actions"] == ["read", "update"]
    assert changed.json()["constraints"] == {}
    assert changed.json()["expires_at"] == "2999-01-01T00:00:00Z"
    assert [g["tool"] for g in listed.json()["results"]] == ["claims-db"]
    assert revoked.status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert list(agent.versions.values_list("number", flat=True)) == [4, 3, 2, 1]


def test_grant_in_an_environment_the_agent_may_not_use_is_refused(org, agent, tool):
    response = client_for(org.owner).put(
        f"{AGENTS}claims-triage/tools/claims-db/",
        {"actions": ["read"], "environments": ["staging"]},
        format="json",
    )

    assert response.status_code == 400
    error = error_of(response)
    assert "staging" in error["message"]
    assert "environments" in error["details"]
    assert not ToolGrant.objects.exists()


def test_grant_of_an_action_the_tool_does_not_offer_is_refused(org, agent, tool):
    response = client_for(org.owner).put(
        f"{AGENTS}claims-triage/tools/claims-db/",
        {"actions": ["delete"], "environments": ["dev"]},
        format="json",
    )

    assert response.status_code == 400
    assert "delete" in error_of(response)["message"]


def test_grant_of_an_unknown_tool_is_a_404(org, agent):
    response = client_for(org.owner).put(
        f"{AGENTS}claims-triage/tools/no-such-tool/",
        {"actions": ["read"], "environments": ["dev"]},
        format="json",
    )

    assert response.status_code == 404


def test_grant_body_needs_actions_and_environments(org, agent, tool):
    response = client_for(org.owner).put(
        f"{AGENTS}claims-triage/tools/claims-db/", {"constraints": []}, format="json"
    )

    details = error_of(response)["details"]
    assert response.status_code == 400
    assert {"actions", "environments", "constraints"} <= set(details)


# --- memory bindings -------------------------------------------------------------------------


def test_owner_binds_changes_and_unbinds_a_memory_store(org, agent):
    MemoryStore.objects.create(name="Case notes", slug="case-notes", store_class="durable")
    client = client_for(org.owner)
    url = f"{AGENTS}claims-triage/memory/case-notes/"

    created = client.put(url, {"access": "read"}, format="json")
    changed = client.put(url, {"access": "read_write"}, format="json")
    listed = client.get(f"{AGENTS}claims-triage/memory/")
    removed = client.delete(url)

    assert created.status_code == 201
    assert changed.status_code == 200
    assert changed.json()["access"] == "read_write"
    assert [b["store"] for b in listed.json()["results"]] == ["case-notes"]
    assert removed.status_code == 204
    assert client.get(url).status_code == 404


def test_writing_to_a_forbidden_store_is_refused(org, agent):
    MemoryStore.objects.create(name="Vault", slug="vault", store_class="forbidden")

    response = client_for(org.owner).put(
        f"{AGENTS}claims-triage/memory/vault/", {"access": "read_write"}, format="json"
    )

    assert response.status_code == 400
    assert "forbidden" in error_of(response)["message"]


# --- versions --------------------------------------------------------------------------------


def test_versions_list_detail_and_diff(org, agent, tool):
    services.agent_update(actor=org.owner, agent=agent, data={"instructions": "v2\nmore"})
    services.grant_set(
        actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["dev"]
    )
    client = client_for(org.auditor)
    base = f"{AGENTS}claims-triage/versions/"

    listed = client.get(base).json()
    detail = client.get(f"{base}1/").json()
    diff = client.get(f"{base}1/diff/3/").json()

    assert [v["number"] for v in listed["results"]] == [3, 2, 1]
    assert listed["results"][0]["url"] == f"http://testserver{base}3/"
    assert detail["snapshot"]["instructions"] == "v1"
    assert detail["created_by"] == "alice"
    assert diff["url"] == f"http://testserver{base}1/diff/3/"
    assert diff["older"]["number"] == 1
    assert diff["newer"]["number"] == 3
    assert diff["is_empty"] is False
    assert [c["field"] for c in diff["changes"]] == ["tools: claims-db"]
    assert "+v2" in diff["instructions_diff"]


def test_missing_or_absurd_version_numbers_are_404s(org, agent):
    client = client_for(org.owner)
    base = f"{AGENTS}claims-triage/versions/"

    assert client.get(f"{base}9/").status_code == 404
    assert client.get(f"{base}99999999999999999999999/").status_code == 404
    assert client.get(f"{base}1/diff/99999999999999999999/").status_code == 404
    assert AgentVersion.objects.count() == 1


# --- tools -----------------------------------------------------------------------------------


def tool_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Ticket desk",
        "slug": "ticket-desk",
        "description": "Reads and closes support tickets.",
        "risk_class": "high",
        "actions": ["read", "close"],
        "data_classes": ["pii", "internal"],
        "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "rate_limit_per_minute": 60,
    }
    body.update(extra)
    return body


def test_owner_registers_a_tool_and_reads_it_back(org):
    response = client_for(org.owner).post("/api/v1/tools/", tool_body(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["url"] == "http://testserver/api/v1/tools/ticket-desk/"
    assert body["owner"] == "alice"
    assert body["data_classes"] == ["internal", "pii"]
    assert body["input_schema"]["properties"]["id"] == {"type": "string"}
    listed = client_for(org.finance).get("/api/v1/tools/?risk=high").json()
    assert [t["slug"] for t in listed["results"]] == ["ticket-desk"]


def test_invalid_json_schema_is_refused_pointing_at_the_problem(org):
    schema = {"type": "object", "properties": {"id": {"type": "strng"}}}

    response = client_for(org.owner).post(
        "/api/v1/tools/", tool_body(input_schema=schema), format="json"
    )

    assert response.status_code == 400
    error = error_of(response)
    assert "input_schema" in error["details"]
    assert "properties/id/type" in error["message"]
    assert not Tool.objects.exists()


def test_tool_with_unknown_data_class_or_duplicate_slug_is_refused(org, tool):
    client = client_for(org.owner)

    unknown = client.post("/api/v1/tools/", tool_body(data_classes=["secret"]), format="json")
    duplicate = client.post("/api/v1/tools/", tool_body(slug="claims-db"), format="json")

    assert unknown.status_code == 400
    assert "data_classes" in error_of(unknown)["details"]
    assert duplicate.status_code == 400
    assert "slug" in error_of(duplicate)["details"]


def test_only_a_tools_owner_or_an_admin_changes_it(org, tool):
    url = "/api/v1/tools/claims-db/"

    by_other = client_for(org.other_owner).patch(url, {"risk_class": "critical"}, format="json")
    by_approver = client_for(org.approver).post("/api/v1/tools/", tool_body(), format="json")
    by_owner = client_for(org.owner).patch(url, {"risk_class": "critical"}, format="json")
    by_admin = client_for(org.admin).patch(url, {"approval_required": True}, format="json")

    assert by_other.status_code == 403
    assert by_approver.status_code == 403
    assert by_owner.status_code == 200
    assert by_admin.json()["risk_class"] == "critical"
    assert by_admin.json()["approval_required"] is True


# --- memory stores and data classes ----------------------------------------------------------


def test_owner_registers_and_changes_a_memory_store(org):
    client = client_for(org.owner)
    body = {"name": "Case notes", "slug": "case-notes", "store_class": "durable",
            "retention_days": 30, "data_classes": ["pii"]}  # fmt: skip

    created = client.post("/api/v1/memory-stores/", body, format="json")
    changed = client.patch(
        "/api/v1/memory-stores/case-notes/", {"retention_days": 90}, format="json"
    )
    bad = client.patch("/api/v1/memory-stores/case-notes/", {"store_class": "attic"}, format="json")

    assert created.status_code == 201, created.json()
    assert created.json()["url"] == "http://testserver/api/v1/memory-stores/case-notes/"
    assert changed.json()["retention_days"] == 90
    assert changed.json()["data_classes"] == ["pii"]
    assert bad.status_code == 400
    filtered = client.get("/api/v1/memory-stores/?store_class=durable").json()
    assert [s["slug"] for s in filtered["results"]] == ["case-notes"]


def test_data_classes_are_listed_for_role_holders_only(org):
    listed = client_for(org.owner).get("/api/v1/data-classes/").json()
    one = client_for(org.owner).get("/api/v1/data-classes/pii/").json()

    assert [d["slug"] for d in listed["results"]][:2] == ["public", "internal"]
    assert one["url"] == "http://testserver/api/v1/data-classes/pii/"
    assert client_for(org.outsider).get("/api/v1/data-classes/").json()["results"] == []
    assert client_for(org.outsider).get("/api/v1/data-classes/pii/").status_code == 404


# --- OpenAPI ---------------------------------------------------------------------------------


def test_openapi_schema_renders_and_lists_the_agent_paths(org):
    client = client_for(org.owner)

    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = client.get("/api/docs/")

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for path in (
        "/api/v1/agents/",
        "/api/v1/agents/{slug}/",
        "/api/v1/agents/{slug}/tools/{tool_slug}/",
        "/api/v1/agents/{slug}/versions/{number}/diff/{other}/",
    ):
        assert path in paths
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn." not in page


# --- manifests -------------------------------------------------------------------------------

MANIFEST = """\
apiVersion: tether/v1
kind: Tool
metadata:
  slug: ticket-desk
  name: Ticket desk
spec:
  description: Reads and closes support tickets.
  actions: [read, close]
  input_schema: {type: object}
  output_schema: {type: object}
---
apiVersion: tether/v1
kind: Agent
metadata:
  slug: claims-triage
  name: Claims triage
spec:
  mission: Sort incoming claims by urgency.
  department: claims
  environments: [dev, prod]
  tools:
    - tool: ticket-desk
      actions: [read]
      environments: [dev]
"""
APPLY = "/api/v1/manifests/apply"


def test_manifest_dry_run_plans_without_writing_then_apply_writes_and_reapply_changes_nothing(org):
    client = client_for(org.owner)

    planned = client.post(f"{APPLY}?dry_run=true", MANIFEST, content_type="application/yaml")
    assert planned.status_code == 200, planned.json()
    assert planned.json()["applied"] is False
    assert planned.json()["dry_run"] is True
    assert not Agent.objects.exists()

    applied = client.post(APPLY, MANIFEST, content_type="text/yaml")
    again = client.post(APPLY, {"manifest": MANIFEST}, format="json")

    assert applied.status_code == 200, applied.json()
    body = applied.json()
    assert body["applied"] is True
    assert [(c["kind"], c["slug"], c["action"]) for c in body["changes"]] == [
        ("Tool", "ticket-desk", "create"),
        ("Agent", "claims-triage", "create"),
    ]
    assert body["changes"][1]["url"] == "http://testserver/api/v1/agents/claims-triage/"
    assert body["changes"][0]["url"] == "http://testserver/api/v1/tools/ticket-desk/"
    assert Agent.objects.get().grants.get().tool.slug == "ticket-desk"
    assert again.status_code == 200
    assert {c["action"] for c in again.json()["changes"]} == {"unchanged"}
    assert again.json()["counts"] == {"create": 0, "update": 0, "unchanged": 2}


def test_a_bad_manifest_lists_every_problem_and_writes_nothing(org):
    bad = MANIFEST.replace("environments: [dev]", "environments: [staging]").replace(
        "kind: Tool", "kind: Tool\ncolour: blue"
    )

    response = client_for(org.owner).post(APPLY, bad, content_type="application/yaml")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_manifest"
    problems = error["details"]["problems"]
    assert len(problems) >= 2
    assert all({"document", "path", "message"} <= set(p) for p in problems)
    assert not Tool.objects.exists()
    assert not Agent.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("key: [unclosed", "application/yaml"),
        ("", "application/yaml"),
        ("a: &x [1]\nb: *x\n", "application/yaml"),
        ("- just\n- a list\n", "text/yaml"),
    ],
    ids=["broken-yaml", "empty", "alias", "list"],
)
def test_malformed_yaml_is_a_400(org, body, content_type):
    response = client_for(org.owner).post(APPLY, body, content_type=content_type)

    assert response.status_code == 400, response.content
    assert error_of(response)["message"]


def test_manifest_request_must_be_yaml_or_a_json_object_with_the_manifest(org):
    client = client_for(org.owner)

    no_key = client.post(APPLY, {"yaml": MANIFEST}, format="json")
    as_list = client.post(APPLY, [MANIFEST], format="json")
    as_text = client.post(APPLY, MANIFEST, content_type="text/plain")
    bad_utf8 = client.post(APPLY, b"kind: \xff\xfe", content_type="application/yaml")
    nul = client.post(APPLY, "kind: a\x00b", content_type="application/yaml")
    bad_flag = client.post(f"{APPLY}?dry_run=perhaps", MANIFEST, content_type="application/yaml")

    assert no_key.status_code == 400
    assert "manifest" in error_of(no_key)["details"]
    assert as_list.status_code == 400
    assert as_text.status_code == 415
    assert bad_utf8.status_code == 400
    assert nul.status_code == 400
    assert bad_flag.status_code == 400
    assert not Agent.objects.exists()


def test_an_oversized_manifest_is_a_413(org, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = client_for(org.owner).post(APPLY, MANIFEST * 10, content_type="application/yaml")

    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_outsider_cannot_apply_a_manifest(org):
    response = client_for(org.outsider).post(APPLY, MANIFEST, content_type="application/yaml")

    assert 400 <= response.status_code < 500
    error_of(response)
    assert not Agent.objects.exists()


def test_export_answers_yaml_that_applies_back_unchanged(org, agent, tool):
    client = client_for(org.owner)

    exported = client.get("/api/v1/manifests/export", HTTP_ACCEPT="application/yaml")
    reapplied = client.post(APPLY, exported.content, content_type="application/yaml")

    assert exported.status_code == 200
    assert exported["Content-Type"].startswith("application/yaml")
    text = exported.content.decode()
    assert "slug: claims-triage" in text
    assert "slug: claims-db" in text
    assert reapplied.status_code == 200, reapplied.json()
    assert {c["action"] for c in reapplied.json()["changes"]} == {"unchanged"}
    assert client.get("/api/v1/manifests/export").content == exported.content


def test_export_shows_an_outsider_nothing_and_errors_stay_json(org, agent):
    outsider = client_for(org.outsider).get("/api/v1/manifests/export")
    anonymous = APIClient().get("/api/v1/manifests/export", HTTP_ACCEPT="application/yaml")

    assert outsider.status_code == 200
    assert "claims-triage" not in outsider.content.decode()
    assert anonymous.status_code == 401
    assert error_of(anonymous)["code"] == "not_authenticated"
