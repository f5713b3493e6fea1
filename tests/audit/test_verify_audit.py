"""``manage.py verify_audit``: OK with the count and head hash, or the first broken link.

The tampering here is what a database superuser can do despite the trigger (replica mode, or
disabling the trigger): the chain is what catches it.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.audit.chain import canonical_record, record_hash
from apps.audit.constants import BreakKind
from apps.audit.models import AuditEvent, AuditVerification

from .conftest import as_superuser_bypassing_the_trigger, record

pytestmark = pytest.mark.django_db


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        call_command("verify_audit", *args, stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 1
    return str(caught.value)


def test_an_intact_chain_prints_ok_with_the_count_and_the_head_hash():
    events = record(4)
    out = verify()
    assert out.startswith("OK: 4 event(s) verified; the chain holds 4 event(s).")
    assert f"Head: event {events[-1].id} (seq 4) hash {events[-1].hash}" in out


def test_an_empty_log_is_ok():
    assert verify().startswith("OK: the audit log is empty.")


def test_each_run_is_recorded_unless_told_not_to():
    record(2)
    verify()
    verification = AuditVerification.objects.get()
    assert verification.ok and verification.events_checked == 2
    assert (verification.actor_type, verification.actor_name) == ("system", "verify_audit")
    verify("--no-record")
    assert AuditVerification.objects.count() == 1


def test_a_message_changed_by_a_superuser_bypassing_the_trigger_is_detected():
    events = record(5)
    target = events[2]
    as_superuser_bypassing_the_trigger(
        "UPDATE audit_auditevent SET message = 'nothing to see here' WHERE id = %s", [target.id]
    )
    assert AuditEvent.objects.get(pk=target.id).message == "nothing to see here"
    message = broken()
    assert f"BROKEN at event {target.id} (seq 3, content)" in message
    assert "content no longer matches its hash" in message
    assert "2 event(s) before it verified" in message
    failed = AuditVerification.objects.get()
    assert (failed.ok, failed.broken_kind, failed.broken_event_id) == (
        False,
        BreakKind.CONTENT,
        target.id,
    )


def test_a_row_deleted_with_the_trigger_disabled_is_detected_at_the_next_event():
    events = record(5)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [events[1].id])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_auditevent_append_only")
    message = broken()
    assert f"BROKEN at event {events[2].id} (seq 3, gap)" in message
    assert f"seq 2 is missing after event {events[0].id}" in message


def test_a_deleted_first_event_is_detected():
    events = record(3)
    as_superuser_bypassing_the_trigger("DELETE FROM audit_auditevent WHERE id = %s", [events[0].id])
    assert f"BROKEN at event {events[1].id} (seq 2, gap)" in broken()


def test_a_row_rewritten_with_a_recomputed_hash_breaks_the_next_link():
    events = record(4)
    forged = AuditEvent.objects.get(pk=events[1].id)
    forged.message = "approved by nobody"
    new_hash = record_hash(canonical_record(forged))
    as_superuser_bypassing_the_trigger(
        "UPDATE audit_auditevent SET message = %s, hash = %s WHERE id = %s",
        [forged.message, new_hash, forged.id],
    )
    message = broken()
    assert f"BROKEN at event {events[2].id} (seq 3, link)" in message
    assert f"prev_hash is not the hash of event {events[1].id}" in message


def test_a_cut_off_tail_is_caught_by_the_last_verification():
    events = record(4)
    verify()  # the checkpoint: the chain ended at seq 4
    as_superuser_bypassing_the_trigger(
        "DELETE FROM audit_auditevent WHERE seq >= 3"
    )  # the last two events, a chain that is still internally valid
    message = broken()
    assert f"BROKEN at event {events[3].id} (seq 4, checkpoint)" in message
    assert "tail was cut off" in message


def test_a_chain_recomputed_from_some_event_on_is_caught_by_the_last_verification():
    events = record(3)
    verify()
    # Rewrite event 2 and re-chain event 3 after it, so every link holds again.
    rows = {e.id: AuditEvent.objects.get(pk=e.id) for e in events}
    second, third = rows[events[1].id], rows[events[2].id]
    second.message = "rewritten"
    second.hash = record_hash(canonical_record(second))
    third.prev_hash = second.hash
    third.hash = record_hash(canonical_record(third))
    for row in (second, third):
        as_superuser_bypassing_the_trigger(
            "UPDATE audit_auditevent SET message = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [row.message, row.prev_hash, row.hash, row.id],
        )
    message = broken()
    assert f"BROKEN at event {third.id} (seq 3, checkpoint)" in message
    assert "different hash than when it was verified" in message


def test_since_id_verifies_from_that_event_anchored_on_the_one_before():
    events = record(6)
    out = verify("--since-id", str(events[3].id))
    assert out.startswith(f"OK: 3 event(s) verified from event {events[3].id}; the chain holds 6")
    as_superuser_bypassing_the_trigger(
        "UPDATE audit_auditevent SET prev_hash = %s WHERE id = %s", ["f" * 64, events[3].id]
    )
    message = broken("--since-id", str(events[3].id))
    assert f"BROKEN at event {events[3].id} (seq 4, content)" in message
    # Tampering before the starting point is out of scope for a partial run.
    assert verify("--since-id", str(events[4].id)).startswith("OK: 2 event(s)")


def test_a_disabled_trigger_is_warned_about():
    record(1)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_auditevent_append_only")
    err = StringIO()
    call_command("verify_audit", stdout=StringIO(), stderr=err)
    assert "the append-only trigger on audit_auditevent is disabled" in err.getvalue()


@pytest.mark.parametrize("args", [["--since-id", "0"], ["--since-id", "x"], ["--chunk-size", "-1"]])
def test_bad_options_are_refused(args):
    with pytest.raises(CommandError):
        call_command("verify_audit", *args, stdout=StringIO(), stderr=StringIO())
