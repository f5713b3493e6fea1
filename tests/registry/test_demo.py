"""The demo organisation loads from docs/examples, answers the home page's questions, and
loading it again changes nothing."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from apps.accounts.models import Department, RoleAssignment, Team, User
from apps.audit.models import AuditEvent
from apps.registry.constants import AgentStatus, MemoryClass, RiskClass
from apps.registry.demo import demo_directory, demo_load, read_people
from apps.registry.manifests import manifest_apply, manifest_export
from apps.registry.models import Agent, AgentVersion, MemoryStore, Tool
from apps.registry.selectors import home_summary

pytestmark = pytest.mark.django_db


def test_the_demo_organisation_loads_with_everything_the_issue_asks_for():
    result = demo_load()
    admin = User.objects.get(username="admin")

    assert Department.objects.count() >= 4
    assert Team.objects.count() >= 8
    assert Agent.objects.count() == 12
    assert Tool.objects.count() >= 30
    assert set(Tool.objects.values_list("risk_class", flat=True)) == set(RiskClass.values)
    assert Tool.objects.filter(risk_class=RiskClass.CRITICAL, approval_required=False).exists()
    assert set(MemoryStore.objects.values_list("store_class", flat=True)) == set(MemoryClass.values)
    assert set(Agent.objects.values_list("status", flat=True)) == set(AgentStatus.values)
    assert Agent.objects.filter(owner__isnull=True).exists()
    assert set(Agent.objects.values_list("department__slug", flat=True)) == set(
        Department.objects.values_list("slug", flat=True)
    )
    several = [a.slug for a in Agent.objects.all() if a.versions.count() >= 2]
    assert len(several) >= 3
    assert AgentVersion.objects.get(agent__slug="claims-triage", number=1).snapshot != (
        AgentVersion.objects.get(agent__slug="claims-triage", number=3).snapshot
    )
    for agent in Agent.objects.all():
        assert agent.mission and agent.environments and agent.default_model
        assert agent.shutdown_action and agent.rollback_action
    for tool in Tool.objects.all():
        assert tool.input_schema.get("type") == "object" and tool.output_schema.get("type")

    summary = home_summary(user=admin)
    assert summary.unowned_agents
    assert summary.ungated_critical_grants

    roles = {login.username: login.roles for login in result.logins}
    assert {"admin", "owner", "approver", "finance", "auditor"} <= set(roles)
    for role in ("admin", "owner", "approver", "finance", "auditor"):
        assert any(r.startswith(role) for login_roles in roles.values() for r in login_roles)


def test_every_demo_login_works_with_the_shared_password():
    result = demo_load()
    for login in result.logins:
        assert authenticate(username=login.username, password=result.password) is not None


def test_loading_the_demo_twice_changes_nothing():
    demo_load()
    counts = (
        AuditEvent.objects.count(),
        AgentVersion.objects.count(),
        User.objects.count(),
        RoleAssignment.objects.count(),
        Team.objects.count(),
    )
    exported = manifest_export(user=User.objects.get(username="admin"))

    out = io.StringIO()
    call_command("load_demo", stdout=out)

    assert "already loaded; nothing changed" in out.getvalue()
    assert "password for all: tether-demo" in out.getvalue()
    assert (
        AuditEvent.objects.count(),
        AgentVersion.objects.count(),
        User.objects.count(),
        RoleAssignment.objects.count(),
        Team.objects.count(),
    ) == counts
    assert manifest_export(user=User.objects.get(username="admin")) == exported


def test_the_demo_export_applies_back_as_all_unchanged():
    demo_load()
    admin = User.objects.get(username="admin")
    result = manifest_apply(actor=admin, text=manifest_export(user=admin), dry_run=True)
    assert result.counts()["unchanged"] == len(result.changes) >= 50


def test_the_demo_people_file_names_every_role_and_a_password_django_accepts():
    people = read_people(demo_directory() / "people.yaml")
    roles = {r["role"] for user in people["users"] for r in user.get("roles") or []}
    assert roles == {"admin", "owner", "approver", "finance", "auditor"}
    assert len(people["departments"]) >= 4
