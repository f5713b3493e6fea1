"""The scheduled verification: run as Tether itself, recorded, a break logged."""

from __future__ import annotations

import logging

import pytest
from django.db import connection, transaction

from apps.audit.models import AuditEvent, AuditVerification
from apps.audit.services import Actor, audit_record
from apps.audit.tasks import verify_chain

pytestmark = pytest.mark.django_db


def record(n):
    for i in range(n):
        audit_record(
            actor=Actor.system(), action="test.event", target_type="t", target_id=i, target_repr="t"
        )


def test_the_scheduled_check_records_an_intact_chain_as_tether():
    record(3)
    assert verify_chain() is True
    verification = AuditVerification.objects.get()
    assert verification.ok and verification.actor_type == "system"


def test_a_break_found_on_schedule_is_logged_as_an_error(caplog):
    record(3)
    tampered = AuditEvent.objects.order_by("seq")[1]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET message = 'x' WHERE id = %s", [tampered.pk])
    with caplog.at_level(logging.ERROR, logger="apps.audit.tasks"):
        assert verify_chain() is False
    assert f"BROKEN at event {tampered.pk}" in caplog.text
    assert not AuditVerification.objects.get().ok
