from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.common.request_context import set_request_id
from apps.registry import services

pytestmark = pytest.mark.django_db


def test_audit_event_freezes_the_actor_name_and_carries_the_request_id(org):
    set_request_id("req-12345678")
    event = audit_record(
        actor=Actor.user(org.owner), action="test.done", target_type="thing", target_id=7,
        target_repr="thing 7", after={"a": 1},
    )  # fmt: skip
    org.owner.username = "alice-renamed"
    org.owner.save()
    event.refresh_from_db()
    assert event.actor_name == "alice"
    assert event.request_id == "req-12345678"


def test_registry_change_records_before_and_after(org):
    agent = services.agent_create(
        actor=org.owner,
        data={"name": "A", "slug": "a", "mission": "m", "department": org.claims},
    )
    services.agent_update(actor=org.owner, agent=agent, data={"mission": "new mission"})
    event = AuditEvent.objects.filter(action="registry.agent.updated").get()
    assert event.before["mission"] == "m"
    assert event.after["mission"] == "new mission"
    assert event.actor_name == "alice"


def test_a_refused_change_leaves_no_audit_event(org):
    from apps.common.errors import NotPermitted

    before = AuditEvent.objects.count()
    with pytest.raises(NotPermitted):
        services.agent_create(
            actor=org.approver,
            data={"name": "A", "slug": "a", "mission": "m", "department": org.claims},
        )
    assert AuditEvent.objects.count() == before


def test_renaming_an_agent_is_audited(org):
    agent = services.agent_create(
        actor=org.owner,
        data={"name": "A", "slug": "a", "mission": "m", "department": org.claims},
    )
    services.agent_update(actor=org.owner, agent=agent, data={"name": "Better name"})
    event = AuditEvent.objects.filter(action="registry.agent.updated").get()
    assert (event.before["name"], event.after["name"]) == ("A", "Better name")
