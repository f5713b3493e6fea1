from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.common.errors import ApplicationError, NotPermitted
from apps.registry import services
from apps.registry.constants import MemoryAccess, MemoryClass
from apps.registry.models import Agent, MemoryStore

from ..factories import make_agent, make_tool

pytestmark = pytest.mark.django_db


def agent_data(org, **extra):
    data = {
        "name": "Claims triage",
        "slug": "claims-triage",
        "mission": "Sort incoming claims by urgency.",
        "department": org.claims,
        "environments": ["dev", "prod"],
        "instructions": "Be careful.",
    }
    data.update(extra)
    return data


def test_owner_registers_agent_and_first_version_is_written(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    assert agent.owner == org.owner
    assert agent.failure_posture == "fail_closed"
    assert [v.number for v in agent.versions.all()] == [1]
    assert AuditEvent.objects.filter(
        action="registry.agent.created", target_id=str(agent.pk)
    ).exists()


def test_owner_cannot_register_agent_in_another_department(org):
    with pytest.raises(NotPermitted):
        services.agent_create(actor=org.owner, data=agent_data(org, department=org.payments))
    assert not Agent.objects.exists()


def test_owner_cannot_change_someone_elses_agent(org):
    agent = make_agent(org.payments, org.other_owner)
    with pytest.raises(NotPermitted):
        services.agent_update(actor=org.owner, agent=agent, data={"mission": "Mine now"})


def test_approver_cannot_register_agents(org):
    with pytest.raises(NotPermitted):
        services.agent_create(actor=org.approver, data=agent_data(org))


def test_duplicate_slug_is_a_clear_error(org):
    services.agent_create(actor=org.owner, data=agent_data(org))
    with pytest.raises(ApplicationError) as exc:
        services.agent_create(actor=org.owner, data=agent_data(org, name="Other"))
    assert "slug" in exc.value.details


def test_grant_in_an_environment_the_agent_may_not_use_is_refused(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org, environments=["dev"]))
    tool = make_tool()
    with pytest.raises(ApplicationError) as exc:
        services.grant_set(
            actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["prod"]
        )
    assert "may not run in prod" in exc.value.message
    assert not agent.grants.exists()


def test_grant_of_an_action_the_tool_lacks_is_refused(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    tool = make_tool(actions=["read"])
    with pytest.raises(ApplicationError) as exc:
        services.grant_set(
            actor=org.owner, agent=agent, tool=tool, actions=["close"], environments=["dev"]
        )
    assert "actions" in exc.value.details


def test_behaviour_changes_make_versions_and_cosmetic_ones_do_not(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    services.agent_update(
        actor=org.owner, agent=agent, data={"mission": "Same behaviour, new words."}
    )
    assert agent.versions.count() == 1
    services.agent_update(actor=org.owner, agent=agent, data={"instructions": "Be very careful."})
    tool = make_tool()
    services.grant_set(
        actor=org.owner, agent=agent, tool=tool, actions=["read"], environments=["dev"]
    )
    assert [v.number for v in agent.versions.order_by("number")] == [1, 2, 3]
    latest = agent.versions.get(number=3)
    assert latest.snapshot["tools"][0]["tool"] == tool.slug


def test_dropping_an_environment_still_used_by_a_grant_is_refused(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    services.grant_set(
        actor=org.owner, agent=agent, tool=make_tool(), actions=["read"], environments=["prod"]
    )
    with pytest.raises(ApplicationError) as exc:
        services.agent_update(actor=org.owner, agent=agent, data={"environments": ["dev"]})
    assert "environments" in exc.value.details


def test_forbidden_memory_store_cannot_be_bound_for_writing(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    store = MemoryStore.objects.create(
        name="HR records", slug="hr-records", store_class=MemoryClass.FORBIDDEN
    )
    with pytest.raises(ApplicationError):
        services.memory_binding_set(
            actor=org.owner, agent=agent, store=store, access=MemoryAccess.READ_WRITE
        )
    services.memory_binding_set(actor=org.owner, agent=agent, store=store, access=MemoryAccess.READ)
    assert agent.memory_bindings.get().access == "read"


def test_invalid_json_schema_points_at_the_problem(org):
    with pytest.raises(ApplicationError) as exc:
        services.tool_create(
            actor=org.owner,
            data={
                "name": "Broken",
                "slug": "broken",
                "description": "x",
                "actions": ["read"],
                "input_schema": {"type": "object", "properties": {"id": {"type": "strin"}}},
                "output_schema": {},
            },
        )
    assert "properties/id/type" in exc.value.message


def test_expired_grants_are_revoked_by_the_beat_task_with_a_new_version(org):
    from datetime import timedelta

    from django.utils import timezone

    from apps.audit.models import AuditEvent
    from apps.registry.tasks import expire_grants

    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    soon = timezone.now() + timedelta(minutes=5)
    services.grant_set(
        actor=org.owner,
        agent=agent,
        tool=make_tool("old"),
        actions=["read"],
        environments=["dev"],
        expires_at=soon,
    )
    services.grant_set(
        actor=org.owner, agent=agent, tool=make_tool("kept"), actions=["read"], environments=["dev"]
    )
    assert services.grants_expire(now=timezone.now()) == 0
    assert services.grants_expire(now=soon + timedelta(seconds=1)) == 1
    assert [g.tool.slug for g in agent.grants.all()] == ["kept"]
    latest = agent.versions.order_by("-number").first()
    assert [t["tool"] for t in latest.snapshot["tools"]] == ["kept"]
    assert AuditEvent.objects.filter(actor_name="grant-expiry").exists()
    assert expire_grants() == 0  # the task body runs the same service; nothing left to do


def test_owner_cannot_give_their_agent_away_or_leave_it_unowned(org):
    agent = services.agent_create(actor=org.owner, data=agent_data(org))
    for new_owner in (None, org.other_owner):
        with pytest.raises(ApplicationError) as exc:
            services.agent_update(actor=org.owner, agent=agent, data={"owner": new_owner})
        assert "owner" in exc.value.details
    services.agent_update(actor=org.admin, agent=agent, data={"owner": None})
    assert Agent.objects.get(pk=agent.pk).owner is None


def test_tool_without_an_output_schema_is_accepted(org):
    tool = services.tool_create(
        actor=org.owner,
        data={
            "name": "Ping",
            "slug": "ping",
            "description": "Checks a host.",
            "actions": ["invoke"],
            "input_schema": {"type": "object"},
        },
    )
    assert tool.output_schema == {}


def test_the_slug_new_is_reserved_because_the_console_uses_it_in_urls(org):
    with pytest.raises(ApplicationError) as exc:
        services.agent_create(actor=org.owner, data=agent_data(org, slug="new"))
    assert "reserved" in exc.value.message


def test_a_schema_nested_too_deeply_to_check_is_a_clear_error(org):
    schema: dict = {"type": "object"}
    for _ in range(5000):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(ApplicationError) as exc:
        services.tool_create(
            actor=org.owner,
            data={
                "name": "Deep",
                "slug": "deep",
                "description": "x",
                "actions": ["read"],
                "input_schema": schema,
            },
        )
    assert "nested too deeply" in exc.value.message.lower()
