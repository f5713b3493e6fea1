"""The decision trail is sealed in blocks into the audit chain; tampering is found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.runtime.decisions import DecisionRequest, decide
from apps.runtime.models import Decision, DecisionSeal
from apps.runtime.sealing import SEAL_LAG, SEALED_ACTION, decisions_seal, decisions_verify

from .conftest import start_run

pytestmark = pytest.mark.django_db


def later():
    """A moment when everything recorded so far is old enough to seal."""
    return timezone.now() + SEAL_LAG + timedelta(seconds=1)


def decide_lookups(setup, n):
    run, _ = start_run(setup)
    request = DecisionRequest(
        action="tool.invoke", tool="crm-lookup", tool_action="read", arguments={"customer_id": "c"}
    )
    return [decide(run=run, request=request) for _ in range(n)]


def bypassing_the_trigger(sql, params=()):
    """What a superuser can do: switch triggers off for the session and write anyway."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def test_decisions_are_sealed_in_blocks_each_chained_and_written_to_the_audit_log(setup):
    first = decide_lookups(setup, 3)
    seal = decisions_seal(now=later())
    assert (seal.first_decision_id, seal.last_decision_id, seal.count) == (
        first[0].pk,
        first[-1].pk,
        3,
    )
    second_batch = decide_lookups(setup, 2)
    second = decisions_seal(now=later())
    assert second.prev_digest == seal.digest and second.count == 2
    assert second.first_decision_id == second_batch[0].pk
    assert decisions_seal(now=later()) is None  # nothing new
    event = AuditEvent.objects.get(action=SEALED_ACTION, target_id=str(second.pk))
    assert event.after["digest"] == second.digest
    check = decisions_verify()
    assert (check.ok, check.seals, check.decisions) == (True, 2, 5)


def test_decisions_younger_than_the_lag_wait_for_the_next_block(setup):
    decide_lookups(setup, 2)
    assert decisions_seal() is None  # both are only just recorded
    assert decisions_seal(now=later()).count == 2


def test_the_trail_refuses_update_and_delete(setup):
    decision = decide_lookups(setup, 1)[0]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).update(disposition="deny")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).delete()


def test_a_changed_sealed_decision_is_named_by_verify_decisions(setup):
    decisions = decide_lookups(setup, 4)
    seal = decisions_seal(now=later())
    call_command("verify_decisions")  # intact: no error
    bypassing_the_trigger(
        "UPDATE runtime_decision SET disposition = 'allow', reasons = '[]' WHERE id = %s",
        [decisions[2].pk],
    )
    with pytest.raises(CommandError, match=f"seal {seal.pk} .*changed"):
        call_command("verify_decisions")


def test_a_deleted_sealed_decision_is_found(setup):
    decisions = decide_lookups(setup, 3)
    decisions_seal(now=later())
    bypassing_the_trigger("DELETE FROM runtime_decision WHERE id = %s", [decisions[1].pk])
    check = decisions_verify()
    assert not check.ok and "3 decisions were sealed, 2 are there now" in check.problem


def test_a_rewritten_seal_is_caught_by_its_audit_event(setup):
    decide_lookups(setup, 2)
    seal = decisions_seal(now=later())
    bypassing_the_trigger(
        "UPDATE runtime_decisionseal SET digest = %s WHERE id = %s", ["f" * 64, seal.pk]
    )
    check = decisions_verify()
    assert not check.ok and "differs from what its audit event recorded" in check.problem
    assert DecisionSeal.objects.get(pk=seal.pk).digest == "f" * 64
