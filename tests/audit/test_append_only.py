"""UPDATE and DELETE on the audit tables are refused by the database, whoever asks."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.db import IntegrityError, connection, transaction
from django.test import RequestFactory

from apps.audit.models import AuditEvent, AuditVerification
from apps.audit.selectors import append_only_guards, chain_verify
from apps.audit.services import audit_chain_verify
from apps.registry import services as registry

from .conftest import record

pytestmark = pytest.mark.django_db


def refused(sql: str, params: list | None = None) -> str:
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as c:
        c.execute(sql, params or [])
    return str(caught.value)


def test_update_of_an_audit_event_is_refused_with_a_clear_error():
    event = record(1)[0]
    message = refused("UPDATE audit_auditevent SET message = 'edited' WHERE id = %s", [event.id])
    assert "audit records are append-only: UPDATE on audit_auditevent is refused" in message
    event.refresh_from_db()
    assert event.message == ""


def test_delete_of_an_audit_event_is_refused_with_a_clear_error():
    event = record(1)[0]
    message = refused("DELETE FROM audit_auditevent WHERE id = %s", [event.id])
    assert "audit records are append-only: DELETE on audit_auditevent is refused" in message
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_orm_is_refused_too():
    event = record(1)[0]
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(message="edited")
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        event.delete()
    event.message = "edited"
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        event.save()


def test_verifications_are_append_only_as_well():
    record(1)
    _, verification = audit_chain_verify(actor=None)
    assert verification is not None
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditVerification.objects.filter(pk=verification.pk).update(ok=False)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        AuditVerification.objects.filter(pk=verification.pk).delete()


def test_the_triggers_are_reported_enabled():
    assert append_only_guards() == {
        "audit_auditevent": "enabled",
        "audit_auditverification": "enabled",
    }


def test_a_disabled_trigger_is_reported():
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
    assert append_only_guards()["audit_auditevent"] == "disabled"


def test_deleting_people_and_agents_leaves_their_audit_trail_alone(org):
    """No foreign keys: nothing cascades into the audit table (which would be refused)."""
    agent = registry.agent_create(
        actor=org.owner,
        data={"name": "A", "slug": "a", "mission": "m", "department": org.claims},
    )
    before = AuditEvent.objects.count()
    agent.delete()
    org.owner.delete()
    assert AuditEvent.objects.count() == before
    assert AuditEvent.objects.filter(actor_name="alice", action="registry.agent.created").exists()
    assert not [f for f in AuditEvent._meta.get_fields() if f.is_relation]
    assert chain_verify().ok


def test_the_django_admin_shows_audit_records_read_only(org):
    request = RequestFactory().get("/admin/")
    request.user = org.admin
    for model in (AuditEvent, AuditVerification):
        model_admin = site._registry[model]
        assert model_admin.has_view_permission(request)
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)
        assert "delete_selected" not in model_admin.get_actions(request)


def test_truncate_still_works_so_the_test_runner_can_empty_the_database():
    record(2)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent")
    assert not AuditEvent.objects.exists()
    assert record(1)[0].seq == 1
