"""Manifests: whole-file validation, plans, idempotency, permissions, export, hostile input."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditEvent
from apps.registry.manifests import (
    ManifestError,
    dump_documents,
    manifest_apply,
    manifest_export,
)
from apps.registry.models import Agent, AgentVersion, MemoryBinding, MemoryStore, Tool, ToolGrant

pytestmark = pytest.mark.django_db


def tool_doc(slug: str = "crm-lookup", **spec: object) -> dict:
    body = {
        "description": "Looks a customer up in the CRM.",
        "risk_class": "low",
        "actions": ["read", "update"],
        "data_classes": ["pii"],
        "input_schema": {
            "type": "object",
            "properties": {"customer_id": {"type": "string"}},
            "required": ["customer_id"],
        },
        "output_schema": {"type": "object"},
    }
    body.update(spec)
    return {
        "apiVersion": "tether/v1",
        "kind": "Tool",
        "metadata": {"slug": slug, "name": slug.replace("-", " ").title()},
        "spec": body,
    }


def store_doc(slug: str = "case-notes", **spec: object) -> dict:
    body = {"description": "Notes on a case.", "store_class": "durable", "retention_days": 30}
    body.update(spec)
    return {
        "apiVersion": "tether/v1",
        "kind": "MemoryStore",
        "metadata": {"slug": slug, "name": slug.replace("-", " ").title()},
        "spec": body,
    }


def agent_doc(slug: str = "claims-triage", **spec: object) -> dict:
    body = {
        "mission": "Sort incoming claims by urgency.",
        "owner": "alice",
        "department": "claims",
        "team": "claims-ops",
        "status": "active",
        "autonomy_level": "L2",
        "environments": ["dev", "prod"],
        "instructions": "Read the claim.\nClassify it.\n",
        "tools": [{"tool": "crm-lookup", "actions": ["read"], "environments": ["prod"]}],
        "memory": [{"store": "case-notes", "access": "read_write"}],
    }
    body.update(spec)
    return {
        "apiVersion": "tether/v1",
        "kind": "Agent",
        "metadata": {"slug": slug, "name": slug.replace("-", " ").title()},
        "spec": body,
    }


def manifest(*docs: dict) -> str:
    return dump_documents(list(docs))


def problems_of(excinfo: pytest.ExceptionInfo[ManifestError]) -> list[dict]:
    return excinfo.value.details["problems"]


def registry_is_empty() -> bool:
    return not (Tool.objects.exists() or MemoryStore.objects.exists() or Agent.objects.exists())


# --- applying --------------------------------------------------------------------------------


def test_admin_applies_tools_stores_and_agents_from_one_file(org):
    # The agent comes first in the file: tools and stores are applied before agents anyway.
    text = manifest(agent_doc(), tool_doc(), store_doc())
    result = manifest_apply(actor=org.admin, text=text)

    assert result.applied
    assert [(c.kind, c.slug, c.action) for c in result.changes] == [
        ("Agent", "claims-triage", "create"),
        ("Tool", "crm-lookup", "create"),
        ("MemoryStore", "case-notes", "create"),
    ]
    agent = Agent.objects.get(slug="claims-triage")
    assert agent.owner == org.owner
    assert agent.team == org.claims_ops
    assert agent.autonomy_level == 2
    assert agent.instructions == "Read the claim.\nClassify it.\n"
    grant = ToolGrant.objects.get(agent=agent)
    assert (grant.tool.slug, grant.actions, grant.environments) == (
        "crm-lookup",
        ["read"],
        ["prod"],
    )
    assert MemoryBinding.objects.get(agent=agent).access == "read_write"
    assert list(Tool.objects.get().data_classes.values_list("slug", flat=True)) == ["pii"]
    assert [v.number for v in agent.versions.all()] == [1]


def test_applying_the_same_file_twice_changes_nothing_the_second_time(org):
    text = manifest(tool_doc(), store_doc(), agent_doc())
    manifest_apply(actor=org.admin, text=text)
    versions, events = AgentVersion.objects.count(), AuditEvent.objects.count()

    result = manifest_apply(actor=org.admin, text=text)

    assert {c.action for c in result.changes} == {"unchanged"}
    assert AgentVersion.objects.count() == versions
    assert AuditEvent.objects.count() == events


def test_a_changed_spec_is_planned_as_an_update_of_those_fields_and_makes_one_version(org):
    manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), agent_doc()))
    changed = agent_doc(
        knowledge_base_version="handbook-2",
        tools=[
            {"tool": "crm-lookup", "actions": ["read", "update"], "environments": ["dev", "prod"]}
        ],
    )
    result = manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), changed))

    by_slug = {c.slug: c for c in result.changes}
    assert by_slug["claims-triage"].action == "update"
    assert by_slug["claims-triage"].fields == ["knowledge_base_version", "tools"]
    assert by_slug["crm-lookup"].action == "unchanged"
    agent = Agent.objects.get(slug="claims-triage")
    assert [v.number for v in agent.versions.all()] == [2, 1]
    assert agent.grants.get().actions == ["read", "update"]


def test_a_manifest_replaces_grants_and_memory_it_no_longer_lists(org):
    manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), agent_doc()))
    manifest_apply(actor=org.admin, text=manifest(agent_doc(tools=[], memory=[])))
    agent = Agent.objects.get(slug="claims-triage")
    assert not agent.grants.exists()
    assert not agent.memory_bindings.exists()
    assert Tool.objects.filter(slug="crm-lookup").exists()  # not in the file: left alone


def test_dry_run_shows_the_plan_and_writes_nothing(org):
    events = AuditEvent.objects.count()
    result = manifest_apply(
        actor=org.admin, text=manifest(tool_doc(), store_doc(), agent_doc()), dry_run=True
    )
    assert not result.applied
    assert result.counts() == {"create": 3, "update": 0, "unchanged": 0}
    assert registry_is_empty()
    assert AuditEvent.objects.count() == events


def test_dry_run_also_reports_what_only_the_services_know(org):
    text = manifest(agent_doc(department="payments", team=None, tools=[], memory=[]))
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=text, dry_run=True)
    assert excinfo.value.code == "permission_denied"


def test_owner_left_out_keeps_the_owner_or_makes_the_author_the_owner(org):
    doc = agent_doc(tools=[], memory=[])
    del doc["spec"]["owner"]
    manifest_apply(actor=org.owner, text=manifest(doc))
    assert Agent.objects.get().owner == org.owner
    assert manifest_apply(actor=org.owner, text=manifest(doc)).changes[0].action == "unchanged"


# --- permissions -----------------------------------------------------------------------------


def test_owner_cannot_apply_an_agent_into_another_department_and_nothing_is_written(org):
    text = manifest(
        tool_doc(),
        agent_doc("payments-bot", owner="alice", department="payments", team=None, memory=[]),
    )
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=text)

    assert excinfo.value.code == "permission_denied"
    assert excinfo.value.http_status == 403
    [problem] = problems_of(excinfo)
    assert (problem["document"], problem["kind"], problem["slug"]) == (2, "Agent", "payments-bot")
    assert registry_is_empty()  # the tool before it was rolled back too


def test_owner_cannot_change_someone_elses_agent_through_a_manifest(org):
    # Carol's agent is in Alice's department: Alice sees it but may not change it.
    doc = agent_doc("carols-bot", owner="carol", tools=[], memory=[])
    manifest_apply(actor=org.admin, text=manifest(doc))
    doc["spec"]["mission"] = "Mine now."
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=manifest(doc))
    assert excinfo.value.code == "permission_denied"
    assert Agent.objects.get().mission == "Sort incoming claims by urgency."


def test_an_outsider_is_told_a_hidden_slug_is_taken_without_seeing_the_agent(org):
    manifest_apply(actor=org.admin, text=manifest(agent_doc(tools=[], memory=[])))
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.outsider, text=manifest(agent_doc(tools=[], memory=[])))
    messages = [p["message"] for p in problems_of(excinfo)]
    assert any("outside your scope" in m for m in messages)


# --- validation ------------------------------------------------------------------------------


def test_the_whole_file_is_checked_and_every_problem_is_reported_at_once(org):
    bad_agent = agent_doc(
        department="nowhere", autonomy_level="L9", environments="prod", colour="red"
    )
    bad_tool = tool_doc("broken-tool", risk_class="extreme", rate_limit_per_minute="fast")
    text = manifest(tool_doc(), store_doc(), bad_agent, bad_tool)

    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=text)

    found = {(p["document"], p["path"]) for p in problems_of(excinfo)}
    assert {
        (3, "spec.colour"),
        (3, "spec.department"),
        (3, "spec.autonomy_level"),
        (3, "spec.environments"),
        (4, "spec.risk_class"),
        (4, "spec.rate_limit_per_minute"),
    } <= found
    assert "problems" in excinfo.value.message
    assert registry_is_empty()


def test_unknown_keys_are_reported_with_their_path(org):
    doc = agent_doc(
        shutdown={"action": "Stop.", "pager": "123"},
        tools=[{"tool": "crm-lookup", "actions": ["read"], "environments": ["prod"], "limit": 5}],
    )
    doc["metadata"]["labels"] = {"a": "b"}
    doc["status_report"] = "green"
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), doc))
    paths = {p["path"] for p in problems_of(excinfo)}
    assert {
        "status_report",
        "metadata.labels",
        "spec.shutdown.pager",
        "spec.tools[0].limit",
    } <= paths


def test_bad_yaml_is_reported_with_its_line(org):
    text = "apiVersion: tether/v1\nkind: Tool\nmetadata:\n  slug: [unclosed\nspec: {}\n"
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=text)
    [problem] = problems_of(excinfo)
    assert problem["line"] in (4, 5)
    assert "Not valid YAML" in problem["message"]


def test_an_unknown_tool_is_reported_and_a_tool_defined_later_in_the_file_counts(org):
    doc = agent_doc(tools=[
        {"tool": "crm-lookup", "actions": ["read"], "environments": ["prod"]},
        {"tool": "teleporter", "actions": ["use"], "environments": ["prod"]},
    ])  # fmt: skip
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(doc, store_doc(), tool_doc()))
    [problem] = problems_of(excinfo)
    assert problem["path"] == "spec.tools[1].tool"
    assert "teleporter" in problem["message"]


def test_a_grant_in_an_environment_the_agent_may_not_use_fails_the_whole_file(org):
    doc = agent_doc(
        environments=["dev"],
        tools=[{"tool": "crm-lookup", "actions": ["read"], "environments": ["dev", "prod"]}],
    )
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), doc))
    [problem] = problems_of(excinfo)
    assert problem["path"] == "spec.tools[0].environments"
    assert "prod" in problem["message"]
    assert registry_is_empty()


def test_a_grant_of_an_action_the_tool_does_not_offer_is_refused(org):
    doc = agent_doc(tools=[{"tool": "crm-lookup", "actions": ["delete"], "environments": ["dev"]}])
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(tool_doc(), store_doc(), doc))
    assert [p["path"] for p in problems_of(excinfo)] == ["spec.tools[0].actions"]


def test_a_forbidden_store_cannot_be_bound_for_writing(org):
    doc = agent_doc(tools=[], memory=[{"store": "vault", "access": "read_write"}])
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(
            actor=org.admin, text=manifest(store_doc("vault", store_class="forbidden"), doc)
        )
    assert [p["path"] for p in problems_of(excinfo)] == ["spec.memory[0].access"]


def test_duplicate_slugs_in_one_file_are_refused(org):
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(tool_doc(), tool_doc()))
    [problem] = problems_of(excinfo)
    assert problem["document"] == 2
    assert "defined twice" in problem["message"]


def test_an_invalid_json_schema_points_at_the_problem(org):
    doc = tool_doc(input_schema={"type": "object", "properties": {"id": {"type": "strnig"}}})
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(doc))
    [problem] = problems_of(excinfo)
    assert problem["path"] == "spec.input_schema"
    assert "properties/id/type" in problem["message"]


def test_wrong_types_and_over_long_values_say_what_is_wrong(org):
    doc = agent_doc(tools=[], memory=[], knowledge_base_version=2.1, tags="one")
    doc["metadata"]["name"] = "x" * 500
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=manifest(doc))
    by_path = {p["path"]: p["message"] for p in problems_of(excinfo)}
    assert "quotes" in by_path["spec.knowledge_base_version"]
    assert "list" in by_path["spec.tags"]
    assert "at most 100 characters" in by_path["metadata.name"]


def test_unknown_api_version_kind_and_missing_parts_are_reported(org):
    text = textwrap.dedent(
        """\
        apiVersion: tether/v2
        kind: Secret
        metadata: {slug: p}
        spec: {}
        ---
        apiVersion: tether/v1
        kind: Tool
        metadata: {name: No slug}
        ---
        - just
        - a list
        """
    )
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=text)
    found = {(p["document"], p["path"]) for p in problems_of(excinfo)}
    assert {(1, "apiVersion"), (1, "kind"), (2, "metadata.slug"), (2, "spec"), (3, "")} <= found


def test_an_empty_manifest_is_refused(org):
    with pytest.raises(ManifestError, match="no documents"):
        manifest_apply(actor=org.admin, text="# nothing here\n")


# --- hostile input ---------------------------------------------------------------------------


def test_python_object_tags_are_refused(org):
    text = "apiVersion: tether/v1\nkind: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=text)
    [problem] = problems_of(excinfo)
    assert "python/object" in problem["message"]
    assert problem["line"] == 2


def test_billion_laughs_aliases_are_refused(org):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(ord("b"), ord("j")):
        prev = chr(n - 1)
        lines.append(f"{chr(n)}: &{chr(n)} [" + ",".join([f"*{prev}"] * 9) + "]")
    with pytest.raises(ManifestError, match="aliases"):
        manifest_apply(actor=org.admin, text="\n".join(lines) + "\n")


def test_a_three_mebibyte_manifest_is_refused(org):
    text = "# " + "x" * (3 * 1024 * 1024) + "\n"
    with pytest.raises(ManifestError, match="at most 2 MiB"):
        manifest_apply(actor=org.admin, text=text)


def test_too_many_documents_are_refused(org):
    with pytest.raises(ManifestError, match="Too many documents"):
        manifest_apply(actor=org.admin, text="---\na: 1\n" * 1001)


def test_deep_nesting_huge_numbers_and_nul_characters_are_refused(org):
    for text in (
        "a: " + "[" * 5000 + "]" * 5000 + "\n",
        "a: " + "9" * 5000 + "\n",
        'apiVersion: tether/v1\nkind: Tool\nmetadata: {slug: t, name: "a\\0b"}\nspec: {}\n',
    ):
        with pytest.raises(ManifestError):
            manifest_apply(actor=org.admin, text=text)
    assert registry_is_empty()


# --- export ----------------------------------------------------------------------------------


def test_export_is_byte_stable_through_apply_into_an_empty_registry(org):
    schema = {  # keys in an unusual order, which PostgreSQL reorders anyway
        "required": ["amount"],
        "properties": {"note": {"maxLength": 200, "type": "string"}, "amount": {"type": "number"}},
        "type": "object",
    }
    docs = [
        tool_doc(input_schema=schema, prohibitions="Never refund twice.\nNever refund cash.\n"),
        store_doc(),
        agent_doc(
            parameters={"temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"]},
            shutdown={"action": "Stop.", "contact": "Ops", "notes": "Line one\nLine two"},
            tools=[
                {
                    "tool": "crm-lookup",
                    "actions": ["read"],
                    "environments": ["prod"],
                    "constraints": {"max_amount": 250, "currency": "EUR"},
                    "expires_at": "2030-01-31T12:00:00+01:00",
                }
            ],
            mission="Ünïcode — and a colon: here",
        ),
        agent_doc("lonely-bot", owner=None, tools=[], memory=[], tags=["needs-owner"]),
    ]
    manifest_apply(actor=org.admin, text=manifest(*docs))
    first = manifest_export(user=org.admin)
    assert "instructions: |" in first  # multi-line text as a literal block
    assert "expires_at: '2030-01-31T11:00:00Z'" in first

    assert {c.action for c in manifest_apply(actor=org.admin, text=first).changes} == {"unchanged"}
    Agent.objects.all().delete()
    Tool.objects.all().delete()
    MemoryStore.objects.all().delete()
    manifest_apply(actor=org.admin, text=first)
    assert manifest_export(user=org.admin) == first


def test_export_holds_only_what_the_user_may_see(org):
    manifest_apply(actor=org.admin, text=manifest(
        tool_doc(), store_doc(), agent_doc(),
        agent_doc("pay-bot", owner="bob", department="payments", team=None, tools=[], memory=[]),
    ))  # fmt: skip
    owner_export = manifest_export(user=org.owner)
    assert "slug: claims-triage" in owner_export
    assert "pay-bot" not in owner_export
    assert "slug: crm-lookup" in owner_export  # the tool catalogue is organisation-wide
    assert manifest_export(user=org.outsider) == ""


# --- commands --------------------------------------------------------------------------------


def test_apply_command_prints_the_plan_and_export_writes_the_file(org, tmp_path: Path):
    path = tmp_path / "registry.yaml"
    path.write_text(manifest(tool_doc(), store_doc(), agent_doc()))
    out = io.StringIO()
    call_command("apply", "-f", str(path), "--dry-run", stdout=out)
    assert "+ create Agent claims-triage" in out.getvalue()
    assert "Dry run" in out.getvalue()
    assert registry_is_empty()

    call_command("apply", "-f", str(tmp_path), "--as", "ada", stdout=io.StringIO())
    changed = agent_doc(mission="Sort claims faster.")
    path.write_text(manifest(tool_doc(), store_doc(), changed))
    out = io.StringIO()
    call_command("apply", "-f", str(path), stdout=out)
    assert "~ update Agent claims-triage (mission)" in out.getvalue()
    assert "= unchanged Tool crm-lookup" in out.getvalue()

    exported = tmp_path / "out" / "export.yaml"
    exported.parent.mkdir()
    call_command("export", "-o", str(exported))
    assert exported.read_text() == manifest_export(user=org.admin)


def test_apply_command_lists_problems_and_fails(org, tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(manifest(agent_doc(department="nowhere", tools=[], memory=[])))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("apply", "-f", str(path), stderr=err)
    assert "spec.department" in err.getvalue()
    assert str(path) in err.getvalue()


def test_apply_command_needs_a_known_user(org, tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(manifest(tool_doc()))
    with pytest.raises(CommandError, match="No active user"):
        call_command("apply", "-f", str(path), "--as", "nobody")
