"""``kind: Budget`` and ``kind: Policy`` in manifests: all or nothing, dry run, idempotent,
permissions through the services, and export → apply → export byte-stable."""

from __future__ import annotations

import textwrap

import pytest

from apps.audit.models import AuditEvent
from apps.policy.models import Policy, PolicyVersion
from apps.registry.manifests import ManifestError, manifest_apply, manifest_export
from apps.runtime.models import Budget

from ..clients import api_client
from ..factories import make_agent

pytestmark = pytest.mark.django_db

AGENT_AND_BUDGETS = textwrap.dedent(
    """\
    apiVersion: tether/v1
    kind: Budget
    metadata: {slug: claims-bot-tokens, name: Tokens per run}
    spec:
      agent: claims-bot
      kind: tokens
      scope: run
      limit: 50000
      edge: degrade
      degrade_to_model: gpt-4.1-mini
    ---
    apiVersion: tether/v1
    kind: Agent
    metadata: {slug: claims-bot, name: Claims bot}
    spec:
      mission: Sort claims.
      department: claims
      environments: [dev]
    ---
    apiVersion: tether/v1
    kind: Budget
    metadata: {slug: claims-spend, name: Claims spend}
    spec:
      department: claims
      kind: spend
      scope: department_month
      limit: 250.5
    """
)

POLICY = textwrap.dedent(
    """\
    apiVersion: tether/v1
    kind: Policy
    metadata: {slug: no-prod-deletes, name: No deletes in prod}
    spec:
      description: Nothing deletes in production.
      text: |
        forbid (principal, action == Action::"tool.invoke", resource)
        when { context.environment == "prod" };
    """
)


def problems(excinfo) -> dict[str, str]:
    return {p["path"]: p["message"] for p in excinfo.value.details["problems"]}


def test_an_agent_and_its_budgets_apply_together_and_twice_changes_nothing(org):
    result = manifest_apply(actor=org.admin, text=AGENT_AND_BUDGETS)
    assert [(c.kind, c.action) for c in result.changes] == [
        ("Budget", "create"), ("Agent", "create"), ("Budget", "create"),
    ]  # fmt: skip
    tokens = Budget.objects.get(slug="claims-bot-tokens")
    assert tokens.agent.slug == "claims-bot" and tokens.edge == "degrade"
    assert Budget.objects.get(slug="claims-spend").limit_text == "250.5"
    events = AuditEvent.objects.count()
    again = manifest_apply(actor=org.admin, text=AGENT_AND_BUDGETS)
    assert again.counts() == {"create": 0, "update": 0, "unchanged": 3}
    assert AuditEvent.objects.count() == events


def test_a_changed_limit_is_an_update_and_a_dry_run_writes_nothing(org):
    manifest_apply(actor=org.admin, text=AGENT_AND_BUDGETS)
    changed = AGENT_AND_BUDGETS.replace("limit: 50000", "limit: 60000")
    plan = manifest_apply(actor=org.admin, text=changed, dry_run=True)
    assert [c.fields for c in plan.changes if c.action == "update"] == [["limit"]]
    assert Budget.objects.get(slug="claims-bot-tokens").limit == 50000
    manifest_apply(actor=org.admin, text=changed)
    assert Budget.objects.get(slug="claims-bot-tokens").limit == 60000


def test_every_budget_problem_is_reported_at_once_and_nothing_is_written(org):
    bad = textwrap.dedent(
        """\
        apiVersion: tether/v1
        kind: Budget
        metadata: {slug: b1, name: One}
        spec: {agent: no-such-agent, kind: tool_calls, scope: run, limit: 0, edge: degrade}
        ---
        apiVersion: tether/v1
        kind: Budget
        metadata: {slug: b2, name: Two}
        spec: {kind: spend, scope: department_month, limit: "12", department: nowhere}
        ---
        apiVersion: tether/v1
        kind: Budget
        metadata: {slug: b3, name: Three}
        spec: {agent: claims-bot, kind: tokens, scope: run, colour: red}
        """
    )
    make_agent(org.claims, org.owner, "claims-bot")
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=bad)
    found = {(p["document"], p["path"]) for p in excinfo.value.details["problems"]}
    assert {
        (1, "spec.agent"), (1, "spec.limit"), (1, "spec.edge"), (1, "spec.degrade_to_model"),
        (2, "spec.limit"), (2, "spec.department"), (3, "spec.colour"), (3, "spec.limit"),
    } <= found  # fmt: skip
    assert not Budget.objects.exists()


def test_permissions_come_from_the_budget_services(org):
    agent = make_agent(org.payments, org.other_owner, "payments-bot")
    doc = AGENT_AND_BUDGETS.split("---\n")[0].replace("claims-bot", agent.slug)
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=doc)
    assert "No agent 'payments-bot'" in problems(excinfo)["spec.agent"]  # not in their scope
    mine = make_agent(org.claims, org.owner, "claims-bot")
    dept = AGENT_AND_BUDGETS.split("---\n")[2]
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=dept)
    assert excinfo.value.http_status == 403
    owned = AGENT_AND_BUDGETS.split("---\n")[0]
    assert manifest_apply(actor=org.owner, text=owned).applied
    assert Budget.objects.get().agent == mine
    hidden = owned.replace("claims-bot-tokens", "elsewhere")
    Budget.objects.create(
        slug="elsewhere", name="x", kind="tokens", scope="run", agent=agent, limit=1
    )
    with pytest.raises(ManifestError, match="outside your scope"):
        manifest_apply(actor=org.owner, text=hidden)


def test_a_budget_cannot_change_kind_through_a_manifest(org):
    manifest_apply(actor=org.admin, text=AGENT_AND_BUDGETS)
    with pytest.raises(ManifestError, match="cannot change"):
        manifest_apply(
            actor=org.admin, text=AGENT_AND_BUDGETS.replace("scope: run", "scope: agent_day")
        )


def test_policies_apply_as_new_versions_and_only_for_admins(org):
    result = manifest_apply(actor=org.admin, text=POLICY)
    assert [(c.kind, c.action) for c in result.changes] == [("Policy", "create")]
    policy = Policy.objects.get(slug="no-prod-deletes")
    assert policy.versions.get().comment == "Applied from a manifest"
    assert manifest_apply(actor=org.admin, text=POLICY).counts()["unchanged"] == 1
    manifest_apply(actor=org.admin, text=POLICY.replace('"prod"', '"staging"'))
    assert PolicyVersion.objects.filter(policy=policy).count() == 2
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.owner, text=POLICY.replace("no-prod-deletes", "mine"))
    assert excinfo.value.http_status == 403
    assert not Policy.objects.filter(slug="mine").exists()


def test_bad_cedar_and_bad_slugs_are_reported_with_their_path(org):
    bad = POLICY.replace("forbid (principal", "forbidd (principal").replace(
        "no-prod-deletes", "Bad Slug"
    )
    with pytest.raises(ManifestError) as excinfo:
        manifest_apply(actor=org.admin, text=bad)
    found = problems(excinfo)
    assert "spec.text" in found and "metadata.slug" in found
    assert not Policy.objects.exists()


def test_export_then_apply_then_export_is_byte_stable(org):
    manifest_apply(actor=org.admin, text=AGENT_AND_BUDGETS + "---\n" + POLICY)
    first = manifest_export(user=org.admin)
    assert "kind: Budget" in first and "kind: Policy" in first
    assert first.index("kind: Agent") < first.index("kind: Policy") < first.index("kind: Budget")
    assert "limit: 250.5" in first and "limit: 50000" in first
    result = manifest_apply(actor=org.admin, text=first)
    assert result.counts()["create"] == result.counts()["update"] == 0
    assert manifest_export(user=org.admin) == first
    owner_export = manifest_export(user=org.owner)
    assert "kind: Policy" not in owner_export  # owners may not read admin policies
    assert "claims-bot-tokens" in owner_export and "claims-spend" in owner_export
    assert "kind: Budget" not in manifest_export(user=org.outsider)


def test_the_api_plan_links_budgets_and_policies(org):
    response = api_client(org.admin).post(
        "/api/v1/manifests/apply?dry_run=true",
        AGENT_AND_BUDGETS + "---\n" + POLICY,
        content_type="application/yaml",
    )
    assert response.status_code == 200, response.json()
    urls = {c["kind"]: c["url"] for c in response.json()["changes"]}
    assert urls["Budget"].endswith("/api/v1/budgets/claims-spend/")
    assert urls["Policy"].endswith("/api/v1/policies/no-prod-deletes/")
    assert not Budget.objects.exists()
